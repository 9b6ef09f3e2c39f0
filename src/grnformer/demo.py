"""The main job end to end, as a new user first sees it (`make demo`, `grnformer demo`).

On PBMC3k (raw counts, no labels) or the user's own h5ad: load the shipped model, embed the cells, predict their
types, denoise, infer one network for all cells and one per predicted cell type, score them against Omnipath and
ENCODE ChIP (all edges and TF rows only) beside GENIE3 and Pearson correlation on the same genes and cells, and write
one self-contained HTML report. Every step is timed; the report states the exact command that reproduces it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from anndata import AnnData  # noqa: E402

from grnformer.errors import InputError  # noqa: E402

TRUTHS = ("omnipath", "encode_chip")
MIN_CELLS_PER_TYPE = 100
GENIE3_TREES = 100


class _Timer:
    """Wall time of each named step, in order."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        print(f"[demo] {name} …", flush=True)
        start = time.perf_counter()
        yield
        self.steps[name] = time.perf_counter() - start
        print(f"[demo] {name}: {self.steps[name]:.1f} s", flush=True)


def _load_input(adata_path: str | None, max_cells: int | None, seed: int) -> tuple[AnnData, str]:
    from grnformer.data import datasets
    from grnformer.data.prepare import prepare

    if adata_path is None:
        raw, name = datasets.load("pbmc3k"), "PBMC3k (10x, 2,700 cells, raw counts)"
    else:
        raw, name = adata_path, str(adata_path)
    adata, report = prepare(raw)
    if max_cells is not None and adata.n_obs > max_cells:
        keep = np.sort(np.random.default_rng(seed).choice(adata.n_obs, max_cells, replace=False))
        adata = adata[keep].copy()
    print(report.summary(), flush=True)
    return adata, name


def _network_genes(adata: AnnData, n_genes: int) -> list[str]:
    """Symbols of the genes the networks cover: the expressed TFs among the most variable genes first, then
    the most variable genes, so that TF-row scoring has regulators to score."""
    import scanpy as sc

    from grnformer.data.genes import tf_symbols

    work = AnnData(adata.X.copy(), var=pd.DataFrame(index=adata.var["symbol"].astype(str).to_numpy()))
    work.var_names_make_unique()
    sc.pp.filter_genes(work, min_cells=max(3, adata.n_obs // 200))
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    sc.pp.highly_variable_genes(work, n_top_genes=min(4 * n_genes, work.n_vars))
    ranked = work.var.sort_values("dispersions_norm", ascending=False).index.tolist()
    organism = str(adata.obs["organism_ontology_term_id"].iloc[0])
    tfs = tf_symbols(organism)
    chosen = [g for g in ranked if g in tfs][: n_genes // 3]
    chosen += [g for g in ranked if g not in set(chosen)][: n_genes - len(chosen)]
    return chosen


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _umap_figure(adata: AnnData, column: str, label_names: dict[str, str]) -> str:
    fig, ax = plt.subplots(figsize=(6.5, 5))
    xy = adata.obsm["X_umap"]
    groups = adata.obs[column].astype(str)
    for i, g in enumerate(sorted(groups.unique(), key=lambda g: -int((groups == g).sum()))):
        m = (groups == g).to_numpy()
        ax.scatter(xy[m, 0], xy[m, 1], s=4, color=plt.cm.tab20(i % 20), label=f"{label_names.get(g, g)} ({m.sum()})")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title("UMAP of grnformer cell embeddings, coloured by predicted cell type")
    ax.legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
    return _png(fig)


def _network_figure(net: AnnData, title: str, n_edges: int = 40) -> str:
    import networkx as nx

    grn = np.asarray(net.varp["GRN"].todense() if hasattr(net.varp["GRN"], "todense") else net.varp["GRN"])
    grn = grn.copy()
    np.fill_diagonal(grn, -np.inf)
    flat = np.argsort(grn, axis=None)[::-1][:n_edges]
    rows, cols = np.unravel_index(flat, grn.shape)
    names = net.var_names.to_numpy()
    g = nx.DiGraph()
    for r, c in zip(rows, cols):
        g.add_edge(names[r], names[c], weight=float(grn[r, c]))
    is_tf = set(net.var_names[net.var["is_tf"].to_numpy(bool)]) if "is_tf" in net.var else set()
    fig, ax = plt.subplots(figsize=(7, 6))
    pos = nx.spring_layout(g, seed=0, k=0.6)
    nx.draw_networkx_nodes(g, pos, ax=ax, node_size=260,
                           node_color=["#e8743b" if n in is_tf else "#9ecae1" for n in g.nodes])
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=7)
    widths = np.array([d["weight"] for _, _, d in g.edges(data=True)])
    widths = 0.5 + 2.5 * (widths - widths.min()) / (np.ptp(widths) or 1)
    nx.draw_networkx_edges(g, pos, ax=ax, width=widths, arrowsize=8, alpha=0.6, edge_color="#555")
    ax.set_title(f"{title}: the {len(rows)} strongest edges (orange = TF)")
    ax.axis("off")
    return _png(fig)


def _top_regulators(net: AnnData, k: int = 8) -> list[str]:
    """Genes with the largest summed outgoing score over each row's top 10 targets."""
    grn = np.asarray(net.varp["GRN"].todense() if hasattr(net.varp["GRN"], "todense") else net.varp["GRN"])
    grn = grn.copy()
    np.fill_diagonal(grn, 0)
    strength = np.sort(grn, axis=1)[:, -10:].sum(axis=1)
    return net.var_names[np.argsort(strength)[::-1][:k]].tolist()


def _pr_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, random_precision: float) -> str:
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (precision, recall) in curves.items():
        ax.plot(recall, precision, label=name, lw=1.2)
    ax.axhline(random_precision, color="grey", ls="--", lw=0.8, label="random")
    ax.set_xlabel("recall"), ax.set_ylabel("precision"), ax.set_title(title, fontsize=9)
    ax.set_xlim(0, 1), ax.set_ylim(0, min(1, max(4 * random_precision, 0.05)))
    ax.legend(fontsize=7)
    return _png(fig)


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="t")


def run_demo(out_dir: str | Path, adata_path: str | None = None, checkpoint: str = "shipped",
             n_genes: int | None = None, max_cells: int | None = None, seed: int = 0) -> Path:
    """Run the whole demo into ``out_dir``; return the path of the HTML report."""
    from grnformer.bench.baselines import infer
    from grnformer.bench.metrics import score_network
    from grnformer.bench.truths import load_truth
    from grnformer.data.labels import term_label
    from grnformer.tasks.classify import classify
    from grnformer.tasks.denoise import denoise
    from grnformer.tasks.embed import embed
    from grnformer.tasks.grn import GRNOptions, grn
    from grnformer.tasks.io import write_csv, write_h5ad
    from grnformer.train.checkpoint import describe, load_bundle, resolve_checkpoint

    n_genes = n_genes or 300
    if n_genes < 20:
        raise InputError(f"--n-genes must be at least 20 (got {n_genes}).")
    if adata_path is not None and not Path(adata_path).is_file():
        raise InputError(f"--adata {adata_path}: no such file.")
    out = Path(out_dir)
    timer = _Timer()
    with timer("load model"):
        checkpoint = resolve_checkpoint(checkpoint)
        bundle = load_bundle(checkpoint)
    with timer("load and validate data"):
        adata, data_name = _load_input(adata_path, max_cells, seed)
    with timer("embed (+ UMAP)"):
        embed(bundle, adata, umap=True, progress=False)
    with timer("classify"):
        metrics_cls = classify(bundle, adata, progress=False).get("cell_type")
    with timer("denoise (highly variable genes)"):
        denoise(bundle, adata, genes="hvg", n_genes=n_genes, progress=False)
    with timer("choose network genes"):
        genes = _network_genes(adata, n_genes)
    type_col = "grnformer_cell_type"
    counts = adata.obs[type_col].value_counts()
    groups = [g for g, n in counts.items() if n >= MIN_CELLS_PER_TYPE]
    networks: dict[str, AnnData] = {}
    with timer(f"grnformer networks: all cells + {len(groups)} predicted cell types, one pass"):
        per_type = grn(bundle, adata, GRNOptions(genes=genes, n_genes=None, groupby=type_col, groups=groups,
                                                 include_all=True), progress=False)
        networks["grnformer (all cells)"] = per_type.pop("all")
    names = {g: term_label(g) for g in counts.index}
    with timer("GENIE3 (all cells)"):
        networks["GENIE3"] = infer("genie3", adata, genes=genes, seed=seed, n_jobs=-1, n_estimators=GENIE3_TREES)
    with timer("Pearson correlation (all cells)"):
        networks["Pearson"] = infer("pearson", adata, genes=genes)

    rows, pr_figs = [], []
    with timer("score against ground truths"):
        organism = str(adata.obs["organism_ontology_term_id"].iloc[0])
        for truth_name in TRUTHS:
            truth = load_truth(truth_name)
            for universe in ("all", "tf"):
                curves, rp = {}, None
                scored = {**networks, **{f"grnformer ({names.get(g, g)})": n for g, n in per_type.items()}}
                for method, net in scored.items():
                    m = score_network(net, truth, universe=universe, organism=organism, curve=True)
                    precision, recall = m.pop("precision"), m.pop("recall")
                    m.pop("fpr", None), m.pop("tpr", None)
                    rows.append({"method": method, "truth": truth_name, "universe": universe, **m})
                    if not method.startswith("grnformer (") or method == "grnformer (all cells)":
                        curves[method] = (precision, recall)
                    rp = m["random_precision"]
                if rp is not None and rows[-1]["n_true"] > 0:
                    pr_figs.append(_pr_figure(curves, f"{truth_name}, {universe} regulators", rp))
    metrics = pd.DataFrame(rows)

    with timer("write outputs"):
        out.mkdir(parents=True, exist_ok=True)
        write_h5ad(adata, out / "cells.h5ad")
        nets_dir = out / "networks"
        nets_dir.mkdir(exist_ok=True)
        all_nets = {"grnformer_all": networks["grnformer (all cells)"], "genie3": networks["GENIE3"],
                    "pearson": networks["Pearson"],
                    **{f"grnformer_{g.replace(':', '_')}": n for g, n in per_type.items()}}
        for key, net in all_nets.items():
            write_h5ad(net, nets_dir / f"{key}.h5ad")
            write_csv(net, nets_dir / f"{key}.csv")
        metrics.to_csv(out / "metrics.csv", index=False)
        (out / "metrics.json").write_text(json.dumps(rows, indent=1, default=float))

    command = "grnformer demo " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 1 and \
        sys.argv[1] == "demo" else f"grnformer demo --out {shlex.quote(str(out_dir))}"
    sections = {
        "Data and model": f"<p>{html.escape(data_name)}: {adata.n_obs:,} cells, {adata.n_vars:,} vocabulary genes."
                          f"</p><pre>{html.escape(describe(checkpoint))}</pre>",
        "Cell embedding and predicted types": _umap_figure(adata, type_col, names) + _table(
            pd.DataFrame({"predicted cell type": [names.get(g, g) for g in counts.index], "term": counts.index,
                          "cells": counts.to_numpy()})) + (
            f"<p>Against labels present in the data: {html.escape(json.dumps(metrics_cls, default=float))}</p>"
            if metrics_cls else "<p>The data carries no cell-type labels: predictions are not scored here.</p>"),
        "Top regulators per predicted cell type": _table(pd.DataFrame(
            [{"network": k, "top regulators (out-strength)": ", ".join(_top_regulators(n))}
             for k, n in {"all cells": networks["grnformer (all cells)"],
                          **{names.get(g, g): n for g, n in per_type.items()}}.items()])),
        "Strongest edges": _network_figure(networks["grnformer (all cells)"], "grnformer, all cells"),
        "Precision-recall against ground truths": "".join(pr_figs),
        "Metrics (with the random baseline of each row)": _table(metrics[[
            "method", "truth", "universe", "n_true", "auprc", "random_precision", "epr", "auroc", "odds_ratio"]]),
        "Timings (wall clock, this machine)": _table(pd.DataFrame(
            {"step": list(timer.steps), "seconds": list(timer.steps.values())})),
        "Reproduce": f"<pre>{html.escape(command)}</pre><p>Outputs: cells.h5ad (obsm['X_grnformer'], "
                     f"obs['grnformer_cell_type'], layers['grnformer_denoised']), networks/*.h5ad and *.csv, "
                     f"metrics.csv/json.</p>",
    }
    body = "".join(f"<section><h2>{html.escape(t)}</h2>{c}</section>" for t, c in sections.items())
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>grnformer demo</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:2px 8px;"
        "border-bottom:1px solid #ddd}img{max-width:100%;margin:4px}pre{background:#f6f6f6;padding:8px;"
        "white-space:pre-wrap}</style></head><body><h1>grnformer demo report</h1>" + body + "</body></html>")
    report = out / "report.html"
    tmp = report.with_suffix(".html.part")
    tmp.write_text(page)
    tmp.replace(report)
    return report
