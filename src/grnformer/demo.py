"""The main job end to end, as a new user first sees it (`make demo`, `grnformer demo`).

On PBMC3k (raw counts, no labels) or the user's own h5ad: load the shipped model, embed the cells, predict their
types, denoise, infer one network for all cells and one per predicted cell type, score them against Omnipath and
ENCODE ChIP (all edges and TF rows only) beside GENIE3 and Pearson correlation on the same genes and cells, and write
one self-contained HTML report. Every step is timed; the report states the exact command that reproduces it.
"""

from __future__ import annotations

import dataclasses
import html
import json
import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from anndata import AnnData  # noqa: E402

from grnformer.atomic import write_text  # noqa: E402
from grnformer.bench.report import figure_png, html_page, img, pr_figure_png, table  # noqa: E402
from grnformer.data.input.expression import log_per_10k, organism_of  # noqa: E402
from grnformer.errors import InputError  # noqa: E402

TRUTHS = ("omnipath", "encode_chip")
UNIVERSES = ("all", "tf")
MIN_CELLS_PER_TYPE = 100
GENIE3_TREES = 100
TYPE_COLUMN = "grnformer_cell_type"
ALL_CELLS = "grnformer (all cells)"
MIN_TF_DETECTION = 0.05  # share of cells a network TF must be detected in (see _network_genes)


@dataclass
class _Network:
    """One inferred network: its name in tables and figures, its file stem under networks/, and for a per-type
    grnformer network the readable cell type."""

    name: str
    stem: str
    net: AnnData
    cell_type: str | None = None
    plain: AnnData | None = None  # per type: the network of the type's cells alone (net: what sets it apart)


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
    from grnformer.data.corpus import datasets
    from grnformer.data.input.prepare import prepare

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
    """Symbols of the genes the networks cover: a third of them the most variable expressed TFs, so that TF-row
    scoring has regulators to score, then the most variable genes (`inference.gene_sets.variable_genes`)."""
    from grnformer.data.genes import tf_symbols
    from grnformer.inference.gene_sets import variable_genes

    symbols = adata.var["symbol"].astype(str).to_numpy()
    # TFs seen in at least 5% of the cells: a TF detected in a handful of cells (many zinc fingers in PBMCs)
    # correlates strongly with whatever shares those cells, and led every type's table by chance
    detected = np.asarray((adata.X > 0).mean(axis=0)).ravel()
    tfs = set(symbols[detected >= MIN_TF_DETECTION]) & tf_symbols(organism_of(adata, required=True))
    return variable_genes(log_per_10k(adata.X), symbols, n_genes, tfs, n_genes // 3,
                          min_cells=max(3, adata.n_obs // 200))


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
    return img(figure_png(fig))


def _dense_grn(net: AnnData) -> np.ndarray:
    """A writable dense copy of the network's scores."""
    grn = net.varp["GRN"]
    return np.array(grn.toarray() if sp.issparse(grn) else grn)


def _network_figure(net: AnnData, title: str, n_edges: int = 40) -> str:
    import networkx as nx

    grn = _dense_grn(net)
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
    return img(figure_png(fig))


def _strength(net: AnnData) -> pd.Series:
    """Each regulator's out-strength (`networks.specificity.regulator_strength`), strongest first."""
    from grnformer.networks.specificity import regulator_strength

    rows = net.var["is_regulator"].to_numpy(dtype=bool) if "is_regulator" in net.var else np.ones(net.n_vars, bool)
    return regulator_strength(net.varp["GRN"], rows, net.var_names.to_numpy())


def _top_regulators(net: AnnData, k: int = 8, scores: bool = False) -> list[str]:
    """The regulators (TFs by default) with the largest out-strength, with it in brackets if ``scores``."""
    top = _strength(net).iloc[:k]
    return [f"{g} ({v:.3g})" if scores else g for g, v in top.items()]


def demo_command(out_dir: str | Path, adata_path: str | None = None, checkpoint: str = "shipped",
                 n_genes: int | None = None, max_cells: int | None = None, seed: int = 0) -> str:
    """The `grnformer demo` command line equivalent to a `run_demo` call (the report's "Reproduce" section)."""
    words = ["grnformer", "demo", "--out", str(out_dir)]
    for flag, value, default in (("--adata", adata_path, None), ("--checkpoint", checkpoint, "shipped"),
                                 ("--n-genes", n_genes, None), ("--max-cells", max_cells, None), ("--seed", seed, 0)):
        if value != default:
            words += [flag, str(value)]
    return shlex.join(words)


def run_demo(out_dir: str | Path, adata_path: str | None = None, checkpoint: str = "shipped",
             n_genes: int | None = None, max_cells: int | None = None, seed: int = 0,
             command: str | None = None) -> Path:
    """Run the whole demo into ``out_dir``; return the path of the HTML report.

    ``command``: the command line the report gives to reproduce it (the CLI passes the one it was called with;
    by default the `grnformer demo` call equivalent to these arguments).
    """
    from grnformer.bundle.checkpoint import load_bundle, resolve_checkpoint

    command = command or demo_command(out_dir, adata_path, checkpoint, n_genes, max_cells, seed)
    n_genes = 300 if n_genes is None else n_genes
    if n_genes < 20:
        raise InputError(f"--n-genes must be at least 20 (got {n_genes}).")
    if adata_path is not None and not Path(adata_path).exists():  # a file or a 10x MTX directory
        raise InputError(f"--adata {adata_path}: no such file.")
    out = Path(out_dir)
    timer = _Timer()
    with timer("load model"):
        checkpoint = resolve_checkpoint(checkpoint)
        bundle = load_bundle(checkpoint)
    with timer("load and validate data"):
        adata, data_name = _load_input(adata_path, max_cells, seed)
    cell_metrics = _annotate_cells(bundle, adata, n_genes, timer)
    with timer("choose network genes"):
        genes = _network_genes(adata, n_genes)
    networks = _infer_networks(bundle, adata, genes, seed, timer)
    with timer("score against ground truths"):
        records, pr_figures = _score(networks, adata)
    with timer("write outputs"):
        _write_outputs(out, adata, networks, records)
    with timer("network explorer"):
        _write_explorer(out, networks)
    sections = _report_sections(adata, data_name, checkpoint, cell_metrics, networks, records, pr_figures, timer,
                                command)
    sections.insert(-1, ("Network explorer", '<p><a href="explorer.html">explorer.html</a>: search a gene, see its '
                         "regulators and targets in every network above, compare two side by side, download the "
                         "table (one self-contained page).</p>"))
    return write_text(out / "report.html", html_page("grnformer demo report", sections))


def _write_explorer(out: Path, networks: list[_Network]) -> Path:
    """explorer.html beside the report: every network of the demo in one page (`networks.explorer`)."""
    from grnformer.networks.explorer import write_explorer

    return write_explorer({n.name: n.net for n in networks}, out / "explorer.html",
                          title="grnformer demo: network explorer")


def _annotate_cells(bundle, adata: AnnData, n_genes: int, timer: _Timer) -> dict | None:
    """Embedding (+ UMAP), predicted labels and denoised counts into ``adata``; the cell-type metrics against the
    data's own labels, when it has any."""
    from grnformer.tasks.classify import classify
    from grnformer.tasks.denoise import denoise
    from grnformer.tasks.embed import embed
    from grnformer.tasks.task_options import DenoiseOptions

    with timer("embed (+ UMAP)"):
        embed(bundle, adata, umap=True, progress=False)
    with timer("classify"):
        cell_metrics = classify(bundle, adata, progress=False).get("cell_type")
    with timer("denoise (highly variable genes)"):
        denoise(bundle, adata, DenoiseOptions(genes="hvg", n_genes=n_genes), progress=False)
    return cell_metrics


def _group_names(adata: AnnData) -> dict[str, str]:
    """Predicted cell-type term → readable name, for every predicted type."""
    from grnformer.data.corpus.labels import term_label

    return {g: term_label(g) for g in adata.obs[TYPE_COLUMN].value_counts().index}


def _infer_networks(bundle, adata: AnnData, genes: list[str], seed: int, timer: _Timer) -> list[_Network]:
    """grnformer's default network method (the protocol's choice, TF rows) on all cells, GENIE3 and Pearson on all
    cells, then grnformer per predicted type with at least `MIN_CELLS_PER_TYPE` cells (one pass over the cells
    feeds every grnformer network)."""
    from grnformer.bench.baselines import infer
    from grnformer.networks.grn import GRNOptions, grn

    counts = adata.obs[TYPE_COLUMN].value_counts()
    groups = [g for g, n in counts.items() if n >= MIN_CELLS_PER_TYPE]
    method = GRNOptions().method
    with timer(f"grnformer network (method {method}), all cells"):
        networks = [_Network(ALL_CELLS, "grnformer_all", grn(bundle, adata, GRNOptions(genes=genes, n_genes=None),
                                                             progress=False))]
    per_type, plain = {}, {}
    if len(groups) >= 2:  # what sets a type apart needs another type to compare with
        with timer(f"grnformer networks per predicted cell type ({len(groups)}): plain and specific "
                   f"({_specificity(method)})"):
            by_type = GRNOptions(genes=genes, n_genes=None, groupby=TYPE_COLUMN, groups=groups)
            plain = grn(bundle, adata, by_type, progress=False)
            per_type = grn(bundle, adata, dataclasses.replace(by_type, specificity=_specificity(method)),
                           progress=False)
    with timer("GENIE3 (all cells)"):
        genie3 = infer("genie3", adata, genes=genes, seed=seed, n_jobs=-1, n_estimators=GENIE3_TREES)
        networks.append(_Network("GENIE3", "genie3", genie3))
    with timer("Pearson correlation (all cells)"):
        networks.append(_Network("Pearson", "pearson", infer("pearson", adata, genes=genes)))
    names = _group_names(adata)
    return networks + [_Network(f"grnformer ({names.get(g, g)}, specific)", f"grnformer_{g.replace(':', '_')}", net,
                                cell_type=names.get(g, g), plain=plain[g]) for g, net in per_type.items()]


def _specificity(method: str) -> str:
    """What the per-type networks show: 'share' for the data methods (chosen on PBMC3k, RESULTS.md
    "Cell-type-specific networks"), else the z-score over types."""
    from grnformer.networks.specificity import CELL_SCALES

    return "share" if method in CELL_SCALES else "zscore"


def _score(networks: list[_Network], adata: AnnData) -> tuple[list[dict], list[str]]:
    """The bench's scoring (`bench.runner.score_networks`) against `TRUTHS`; PR figures of the all-cells
    networks per truth and universe."""
    from grnformer.bench.runner import resolve_truths, score_networks

    records, curves = score_networks({n.name: n.net for n in networks}, resolve_truths(TRUTHS),
                                     organism_of(adata, required=True), UNIVERSES)
    figures = []
    for truth in TRUTHS:
        for universe in UNIVERSES:
            items = [(n.name, *curves[(truth, universe, n.name)]) for n in networks
                     if n.cell_type is None and (truth, universe, n.name) in curves]
            png = pr_figure_png(items, f"{truth}, {universe} regulators")
            if png is not None:
                figures.append(img(png, "PR curves"))
    return records, figures


def _write_outputs(out: Path, adata: AnnData, networks: list[_Network], records: list[dict]) -> None:
    from grnformer.inference.outputs import write_h5ad
    from grnformer.networks.network_file import write_network

    (out / "networks").mkdir(parents=True, exist_ok=True)
    write_h5ad(adata, out / "cells.h5ad")
    for n in networks:
        write_network(n.net, out / "networks" / f"{n.stem}.h5ad", csv=True)
    write_text(out / "metrics.csv", pd.DataFrame(records).to_csv(index=False))
    write_text(out / "metrics.json", json.dumps(records, indent=1, default=float))


def _regulator_table(networks: list[_Network]) -> pd.DataFrame:
    """Per network, its strongest TF regulators; per type also those that set it apart, with their scores."""
    rows = [{"network": "all cells", "strongest TF regulators (out-strength)": ", ".join(_top_regulators(
        networks[0].net, scores=True)), "TFs that set the type apart (out-strength of its specific network)": ""}]
    rows += [{"network": n.cell_type, "strongest TF regulators (out-strength)": ", ".join(_top_regulators(
        n.plain, scores=True)), "TFs that set the type apart (out-strength of its specific network)":
        ", ".join(_top_regulators(n.net, scores=True))} for n in networks if n.cell_type is not None]
    return pd.DataFrame(rows)


def _specific_note(networks: list[_Network]) -> str:
    """What 'specific' means here, and how much the two largest types' top-10 regulators overlap either way."""
    from grnformer.networks.specificity import top_overlap

    typed = [n for n in networks if n.cell_type is not None]
    text = ("<p>A type's <em>specific</em> network is its share of the all-cells network: two genes' co-variation "
            "within the type plus their co-elevation in it (both higher in the type than over all cells), so a "
            "regulator leads when it is expressed more in the type and moves with the type's genes; the plain "
            "network (the type's cells alone) ranks the same hub TFs first in most types. Scores are out-strength, "
            "each regulator's summed scores over all genes. The per-type networks in the files, the metrics and the "
            "explorer are the specific ones (<code>grn --groupby COLUMN --specificity share</code>).")
    if len(typed) >= 2:
        a, b = typed[:2]
        specific = top_overlap(_top_regulators(a.net, 10), _top_regulators(b.net, 10))
        plain = top_overlap(_top_regulators(a.plain, 10), _top_regulators(b.plain, 10))
        text += (f" The two largest types ({html.escape(a.cell_type)}, {html.escape(b.cell_type)}) share "
                 f"{specific} of their 10 strongest regulators in the specific networks, {plain} in the plain ones.")
    return text + "</p>"


def _report_sections(adata: AnnData, data_name: str, checkpoint: str, cell_metrics: dict | None,
                     networks: list[_Network], records: list[dict], pr_figures: list[str], timer: _Timer,
                     command: str) -> list[tuple[str, str]]:
    from grnformer.bundle.checkpoint import describe

    counts = adata.obs[TYPE_COLUMN].value_counts()
    names = _group_names(adata)
    all_cells = networks[0]
    types = pd.DataFrame({"predicted cell type": [names.get(g, g) for g in counts.index], "term": counts.index,
                          "cells": counts.to_numpy()})
    scored = (f"<p>Against labels present in the data: {html.escape(json.dumps(cell_metrics, default=float))}</p>"
              if cell_metrics else "<p>The data carries no cell-type labels: predictions are not scored here.</p>")
    regulators = _regulator_table(networks)
    metrics = pd.DataFrame(records)
    if metrics.empty:
        metrics_html = (f"<p>No ground truth of this organism ({html.escape(organism_of(adata))}) among "
                        f"{', '.join(TRUTHS)}: the networks are not scored.</p>")
    else:
        metrics_html = table(metrics[["method", "truth", "universe", "n_true", "auprc", "random_precision", "epr",
                                      "auroc", "odds_ratio"]])
    return [
        ("Data and model", f"<p>{html.escape(data_name)}: {adata.n_obs:,} cells, {adata.n_vars:,} vocabulary "
                           f"genes.</p><pre>{html.escape(describe(checkpoint))}</pre>"),
        ("Cell embedding and predicted types", _umap_figure(adata, TYPE_COLUMN, names) + table(types) + scored),
        ("Top regulators per predicted cell type", table(regulators) + _specific_note(networks)),
        ("Strongest edges", _network_figure(all_cells.net, "grnformer, all cells")),
        ("Precision-recall against ground truths", "".join(pr_figures)),
        ("Metrics (with the random baseline of each row)", metrics_html),
        ("Timings (wall clock, this machine)", table(pd.DataFrame({"step": list(timer.steps),
                                                                   "seconds": list(timer.steps.values())}))),
        ("Reproduce", f"<pre>{html.escape(command)}</pre><p>Outputs: cells.h5ad (obsm['X_grnformer'], "
                      f"obs['grnformer_cell_type'], layers['grnformer_denoised']), networks/*.h5ad and *.csv, "
                      f"metrics.csv/json.</p>"),
    ]
