"""Benchmark outputs: metrics JSON, a markdown table, PR-curve PNGs, and one self-contained HTML report.

Every file is written atomically (`grnformer.atomic`). The HTML carries its images inline (base64), so it can
be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import json
import math
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
            lines.append(f"| {r['method']} | {_fmt(r['auprc'], 'auprc')} | {_fmt(ratio, 'epr')} | {_fmt(r['ap'], 'ap')} "
                         f"| {_fmt(r['auroc'], 'auroc')} | {_fmt(r['epr'], 'epr')} "
                         f"| {_fmt(r['precision_at_k'], 'precision_at_k')} | {_fmt(r['odds_ratio'], 'odds_ratio')} "
                         f"| {_fmt(r['seconds'], 'seconds')} |")
    return "\n".join(lines) + "\n"


def plot_pr_curves(curves: dict, out_dir: Path) -> dict[tuple[str, str, str], Path]:
    """One PNG per dataset × truth × universe: each method's PR curve and the random-precision line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str, str], list] = {}
    for (dname, tname, universe, method), (recall, precision) in curves.items():
        groups.setdefault((dname, tname, universe), []).append((method, recall, precision))
    paths = {}
    for (dname, tname, universe), items in groups.items():
        items = [i for i in items if len(i[1])]
        if not items:                                  # no true edge among the candidates: nothing to draw
            continue
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for method, recall, precision in items:
            ax.step(recall, precision, where="post", label=method, linewidth=1.2)
        baseline = items[0][2][-1]                     # precision at recall 1 = random precision
        ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label=f"random ({baseline:.1e})")
        ax.set_yscale("log")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision (log)")
        ax.set_title(f"{dname} vs {tname} ({universe})", fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
        fig.tight_layout()
        path = out_dir / f"pr_{dname}__{tname}__{universe}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        paths[(dname, tname, universe)] = path
    return paths


def _html(results: dict, images: dict[tuple[str, str, str], Path]) -> str:
    df = results_table(results)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>grnformer benchmark</title><style>",
             "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}"
             "td:first-child{text-align:left}img{max-width:520px;margin:4px}pre{font-size:12px;overflow:auto}",
             "</style></head><body><h1>grnformer benchmark</h1>",
             f"<p>Created {html.escape(results['created'])}. Settings: <code>"
             f"{html.escape(json.dumps(_json_safe(results['settings'])))}</code></p>",
             "<p>AUPRC: exact area under the PR curve (linear TP/FP interpolation inside tied blocks); AP: "
             "scikit-learn's average precision; EPR: precision among the top K (K = true edges) ÷ random "
             "precision; odds ratio at K without continuity correction. Self-pairs are excluded.</p>"]
    parts.append("<h2>Datasets</h2>" + pd.DataFrame(results["datasets"]).T.to_html())
    parts.append("<h2>Run time</h2>" + pd.DataFrame(results["timings"]).to_html(index=False))
    if not df.empty:
        for (dname, tname, universe), block in df.groupby(["dataset", "truth", "universe"], sort=False):
            parts.append(f"<h2>{html.escape(dname)} vs {html.escape(tname)} — {html.escape(universe)}</h2>")
            shown = block.drop(columns=["dataset", "truth", "universe"]).copy()
            for col in COLUMNS:
                shown[col] = [_fmt(v, col) for v in shown[col]]
            parts.append(shown.to_html(index=False))
            img = images.get((dname, tname, universe))
            if img is not None:
                data = base64.b64encode(img.read_bytes()).decode()
                parts.append(f"<img alt='PR curves' src='data:image/png;base64,{data}'>")
    parts.append("<h2>Ground truths</h2>")
    for tname, info in results["truths"].items():
        parts.append(f"<details><summary>{html.escape(tname)}: {info['edges']:,} edges ({info['organism']})"
                     f"</summary><pre>{html.escape(json.dumps(_json_safe(info['provenance']), indent=1))}</pre>"
                     f"</details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(results: dict, curves: dict, out_dir: str | Path) -> Path:
    """metrics.json, results.md, pr_*.png and report.html in ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "metrics.json", json.dumps(_json_safe(results), indent=1))
    write_text(out / "results.md", markdown_table(results))
    images = plot_pr_curves(curves, out)
    write_text(out / "report.html", _html(results, images))
    return out / "report.html"
