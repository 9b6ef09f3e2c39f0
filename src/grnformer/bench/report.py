"""Benchmark outputs: metrics JSON, a markdown table, PR-curve PNGs, and one self-contained HTML report.

Every file is written atomically (`grnformer.atomic`). The HTML carries its images inline (base64), so it can
be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from grnformer.atomic import atomic_path, write_text

COLUMNS = ["auprc", "ap", "auroc", "epr", "precision_at_k", "odds_ratio", "random_precision", "n_true",
           "n_candidates", "seconds"]


def _json_safe(obj):
    """NaN/inf as strings JSON can hold ('nan', 'inf'), numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else str(f)
    return obj


def _fmt(value, column: str) -> str:
    if isinstance(value, str):
        return value
    if column in ("n_true", "n_candidates"):
        return f"{int(value):,}"
    if column == "seconds":
        return f"{value:.1f}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if column in ("random_precision",) or abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"


def results_table(results: dict) -> pd.DataFrame:
    """One row per method × dataset × truth × universe with the reported metrics."""
    df = pd.DataFrame(results["records"])
    if df.empty:
        return df
    return df[["dataset", "truth", "universe", "method", "n_regulators", *COLUMNS]]


def markdown_table(results: dict) -> str:
    """Blocks per dataset × truth × universe, a row per method; ratio columns say how far above random."""
    df = results_table(results)
    if df.empty:
        return "_no dataset matched the organism of any ground truth_\n"
    lines = []
    for (dname, tname, universe), block in df.groupby(["dataset", "truth", "universe"], sort=False):
        first = block.iloc[0]
        lines.append(f"\n**{dname} vs {tname}**, universe `{universe}` — {int(first['n_regulators'])} regulators, "
                     f"{int(first['n_true']):,} true edges among {int(first['n_candidates']):,} candidates, "
                     f"random precision {first['random_precision']:.2e}\n")
        lines.append("| method | AUPRC | AUPRC/random | AP | AUROC | EPR | precision@K | odds ratio | time (s) |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for _, r in block.iterrows():
            ratio = r["auprc"] / r["random_precision"] if r["random_precision"] else float("nan")
            lines.append(f"| {r['method']} | {_fmt(r['auprc'], 'auprc')} | {_fmt(ratio, 'epr')} "
                         f"| {_fmt(r['ap'], 'ap')} | {_fmt(r['auroc'], 'auroc')} | {_fmt(r['epr'], 'epr')} "
                         f"| {_fmt(r['precision_at_k'], 'precision_at_k')} | {_fmt(r['odds_ratio'], 'odds_ratio')} "
                         f"| {_fmt(r['seconds'], 'seconds')} |")
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return buf.getvalue()


def pr_figure_png(items: list[tuple[str, np.ndarray, np.ndarray]], title: str) -> bytes | None:
    """PR curves ``(method, recall, precision)`` on one log-precision plot with the random line; None when no
    curve has a point (no true edge among the candidates)."""
    items = [i for i in items if len(i[1])]
    if not items:
        return None
    fig, ax = _pyplot().subplots(figsize=(5.5, 4))
    for method, recall, precision in items:
        ax.step(recall, precision, where="post", label=method, linewidth=1.2)
    baseline = items[0][2][-1]                     # precision at recall 1 = random precision
    ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label=f"random ({baseline:.1e})")
    ax.set_yscale("log")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (log)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return figure_png(fig)


def plot_pr_curves(curves: dict, out_dir: Path) -> dict[tuple[str, str, str], Path]:
    """One PNG per dataset × truth × universe: each method's PR curve and the random-precision line."""
    groups: dict[tuple[str, str, str], list] = {}
    for (dname, tname, universe, method), (recall, precision) in curves.items():
        groups.setdefault((dname, tname, universe), []).append((method, recall, precision))
    paths = {}
    for (dname, tname, universe), items in groups.items():
        png = pr_figure_png(items, f"{dname} vs {tname} ({universe})")
        if png is None:
            continue
        path = out_dir / f"pr_{dname}__{tname}__{universe}.png"
        with atomic_path(path) as part:
            part.write_bytes(png)
        paths[(dname, tname, universe)] = path
    return paths


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}"
         "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}"
         "td:first-child{text-align:left}img{max-width:100%;margin:4px}"
         "pre{font-size:12px;background:#f6f6f6;padding:8px;white-space:pre-wrap;overflow:auto}")


def img(png: bytes, alt: str = "figure") -> str:
    """An inline <img> (base64), so that the page stands alone."""
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def table(df: pd.DataFrame, index: bool = False) -> str:
    """A DataFrame as an HTML table in the page style (floats to 4 significant digits)."""
    return df.to_html(index=index, float_format=lambda v: f"{v:.4g}", border=0)


def html_page(title: str, sections: Sequence[tuple[str, str]], intro: str = "") -> str:
    """The one page layout of every grnformer report: title, intro HTML, then a titled section per item."""
    body = "".join(f"<section><h2>{html.escape(head)}</h2>{content}</section>\n" for head, content in sections)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{intro}\n{body}</body></html>")


def _html(results: dict, images: dict[tuple[str, str, str], Path]) -> str:
    df = results_table(results)
    intro = (f"<p>Created {html.escape(results['created'])}. Settings: <code>"
             f"{html.escape(json.dumps(_json_safe(results['settings'])))}</code></p>"
             "<p>AUPRC: exact area under the PR curve (linear TP/FP interpolation inside tied blocks); AP: "
             "scikit-learn's average precision; EPR: precision among the top K (K = true edges) ÷ random "
             "precision; odds ratio at K without continuity correction. Self-pairs are excluded.</p>")
    sections = [("Datasets", table(pd.DataFrame(results["datasets"]).T, index=True)),
                ("Run time", table(pd.DataFrame(results["timings"])))]
    if not df.empty:
        for (dname, tname, universe), block in df.groupby(["dataset", "truth", "universe"], sort=False):
            shown = block.drop(columns=["dataset", "truth", "universe"]).copy()
            for col in COLUMNS:
                shown[col] = [_fmt(v, col) for v in shown[col]]
            image = images.get((dname, tname, universe))
            sections.append((f"{dname} vs {tname} — {universe}",
                             table(shown) + (img(image.read_bytes(), "PR curves") if image is not None else "")))
    sections.append(("Ground truths", "".join(
        f"<details><summary>{html.escape(tname)}: {info['edges']:,} edges ({info['organism']})"
        f"</summary><pre>{html.escape(json.dumps(_json_safe(info['provenance']), indent=1))}</pre></details>"
        for tname, info in results["truths"].items())))
    return html_page("grnformer benchmark", sections, intro)


def write_report(results: dict, curves: dict, out_dir: str | Path) -> Path:
    """metrics.json, results.md, pr_*.png and report.html in ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "metrics.json", json.dumps(_json_safe(results), indent=1))
    write_text(out / "results.md", markdown_table(results))
    images = plot_pr_curves(curves, out)
    write_text(out / "report.html", _html(results, images))
    return out / "report.html"
