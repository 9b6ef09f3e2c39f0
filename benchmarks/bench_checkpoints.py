"""Zero-shot quality at each checkpoint of the training campaign, with bootstrap intervals, beside baselines.

    .venv/bin/python benchmarks/bench_checkpoints.py CKPT [CKPT ...] [--denoise-cells 300]

Every task runs on cells and truths the campaign never trains on (scripts/campaign.py HELD_OUT):
- labels, retina_test: classify() accuracy and macro-F1 vs a 15-NN classifier on 50 PCs fitted on retina_train;
- embeddings, retina_test and paul2015 (a labelled set left out of training): k-means (k = number of types) on
  the cell embedding vs on 50 PCs, ARI and NMI, each the mean over 10 k-means starts (`toolkit.kmeans_partitions`:
  one start's optimum is a lucky or unlucky draw);
- denoising, PBMC3k: per-cell Spearman after removing 70% of the counts (bench_tasks_quality's protocol) vs kNN
  smoothing;
- networks: grnformer's attention network (mean_qk) vs Pearson and GENIE3 on the same cells and genes
  (bench_networks' gene sets: 200 genes, a third of them regulators), PBMC3k vs Omnipath and ENCODE (TF rows),
  Chen hESC and Semrau mESC vs McCalla ChIP∩KD (rows: the truth's regulators). AUPRC ratio (AUPRC / random
  precision) and EPR.
Intervals: 95% percentile bootstrap over cells (200 resamples) for labels, embeddings and denoising; for networks,
over regulators (200 resamples of the rows with replacement, `bench.protocol.bootstrap`: rows are the unit a
truth is built from). Both come from `bench.toolkit`. Baselines do not depend on the checkpoint and are computed
once per protocol version, library version and gene set. Output: a markdown table per checkpoint, the record
benchmarks/results/checkpoints.json (`bench.toolkit.write_record`; checkpoints keyed by name and digest) and a plot
of every measure against cell views.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tasks_quality import KEEP, _pcs, knn_smooth, per_cell_spearman  # noqa: E402

from grnformer.atomic import write_text  # noqa: E402
from grnformer.bench import protocol, toolkit  # noqa: E402
from grnformer.bench.baselines import (
    infer,  # noqa: E402
    method_version,  # noqa: E402
)
from grnformer.bench.truths import load_truth  # noqa: E402
from grnformer.bundle.checkpoint import load_bundle, resolve_checkpoint  # noqa: E402
from grnformer.data.corpus import datasets  # noqa: E402
from grnformer.data.corpus.labels import column  # noqa: E402
from grnformer.data.input.expression import log_per_10k  # noqa: E402
from grnformer.data.input.prepare import prepare  # noqa: E402
from grnformer.inference.device import uses_bf16  # noqa: E402
from grnformer.networks.grn import grn  # noqa: E402
from grnformer.networks.grn_options import GRNOptions
from grnformer.tasks.classify import classify  # noqa: E402
from grnformer.tasks.denoise import denoise  # noqa: E402
from grnformer.tasks.embed import embed  # noqa: E402
from grnformer.tasks.task_options import DenoiseOptions

CELL_TYPE = column("cell_type")
N_BOOT = toolkit.N_BOOT
EMBEDDING_SETS = {"retina_test": CELL_TYPE, "paul2015_mouse_myeloid_progenitors_marsseq": "cell_type2"}
NETWORKS = {"pbmc3k": ("omnipath", "encode_chip"), "chen_hesc": ("mccalla_hesc_chip_kd",),
            "semrau_mesc": ("mccalla_mesc_chip_kd",)}
NETWORK_GENES, NETWORK_CELLS = 200, 500
TASKS = ("labels", "monocytes", "embeddings", "denoising", "networks")
# the card lines each task writes (their keys start so), for a partial re-measure
CARD_PREFIX = {"labels": ["labels / retina_test"], "monocytes": ["labels / PBMC3k"], "embeddings": ["embedding /"],
               "denoising": ["denoising /"], "networks": ["networks /"]}


def interval(stat: Callable[[np.ndarray], float], n: int, seed: int = toolkit.SEED) -> list[float]:
    """[estimate, low, high]: the statistic on all n units (cells) and its 95% bootstrap percentile interval
    (`bench.toolkit.interval`)."""
    return toolkit.interval(stat, n, N_BOOT, seed)


# -------------------------------------------------------------------------------------------- cell-level tasks

def labels(bundle, cache: dict) -> dict[str, Any]:
    test = datasets.load("retina_test")
    classify(bundle, test, progress=False)
    truth = test.obs[CELL_TYPE].astype(str).to_numpy()
    pred = test.obs["grnformer_cell_type"].astype(str).to_numpy()
    if "knn" not in cache:
        train, _ = prepare(datasets.load("retina_train"))
        ptest, _ = prepare(datasets.load("retina_test"))
        genes = train.var_names.intersection(ptest.var_names)
        pcs = _pcs(sp.vstack([train[:, genes].X, ptest[:, genes].X]).tocsr())
        knn = KNeighborsClassifier(n_neighbors=15).fit(pcs[: train.n_obs], train.obs[CELL_TYPE].astype(str))
        cache["knn"] = knn.predict(pcs[train.n_obs:])
    out = {}
    for name, p in (("grnformer", pred), ("kNN on PCA", cache["knn"])):
        out[name] = {"accuracy": interval(lambda i: float(np.mean(p[i] == truth[i])), len(truth)),
                     "macro_f1": interval(lambda i: float(f1_score(truth[i], p[i], average="macro")), len(truth))}
    return out


# The classical (CD14+ CD16-) monocyte leaf, and 'CD14-positive monocyte', its ancestor term (the FACS-sorted set's
# label; its residual leaf, "this term, none of its observed descendants"). An ancestor call is not a CD14 call:
# the term also covers the CD16 monocytes, so the two are counted apart.
CD14_LEAF, CD14_ANCESTOR = "CL:0002057", "CL:0001054"


def monocytes(bundle, cache: dict) -> dict[str, Any]:
    """PBMC3k monocytes as the marker-based silver labeller (grnformer.data.corpus.silver) calls them, and what the
    model calls each group. The reference is that labeller, not a sort: the same rules labelled the unlabelled
    training PBMC sets, so this measures agreement with them. 'agree' counts only the group's own leaf; calls of the
    ancestor term 'CD14-positive monocyte' are reported apart (called_ancestor), never as CD14 calls."""
    from grnformer.data.corpus.silver import (
        CD16_MONOCYTE,
        CLASSICAL_MONOCYTE,
        pbmc_cell_types,
    )

    adata = datasets.load("pbmc3k")
    if "silver" not in cache:
        adata.X = adata.X.astype(np.float32)
        cache["silver"] = pbmc_cell_types(adata).to_numpy()
    classify(bundle, adata, progress=False)
    pred = adata.obs["grnformer_cell_type"].astype(str).to_numpy()
    out = {}
    for name, term in (("CD14 monocytes", CLASSICAL_MONOCYTE), ("CD16 monocytes", CD16_MONOCYTE)):
        cells = cache["silver"] == term
        called = pred[cells]
        out[name] = {"reference": "silver labeller (grnformer.data.corpus.silver), marker rules",
                     "n_silver": int(cells.sum()), "agree": float(np.mean(called == term)),
                     "called_CD14": int((called == CD14_LEAF).sum()),
                     "called_ancestor": int((called == CD14_ANCESTOR).sum()),
                     "called_CD16": int((called == CD16_MONOCYTE).sum()),
                     "called_other": int((~np.isin(called, [CD14_LEAF, CD14_ANCESTOR, CD16_MONOCYTE])).sum())}
    return out


def _cluster_scores(rep: np.ndarray, truth: np.ndarray) -> dict[str, list[float]]:
    """ARI and NMI of k-means (k = number of types) with the types, as the mean over k-means starts
    (`toolkit.kmeans_partitions`), each [estimate, low, high] over cells."""
    found = toolkit.kmeans_partitions(rep, len(np.unique(truth)))
    return {"ari": interval(toolkit.partition_score(adjusted_rand_score, truth, found), len(truth)),
            "nmi": interval(toolkit.partition_score(normalized_mutual_info_score, truth, found), len(truth))}


def embeddings(bundle, cache: dict) -> dict[str, Any]:
    out = {}
    for name, label in EMBEDDING_SETS.items():
        adata = datasets.load(name)
        truth = adata.obs[label].astype(str).to_numpy()
        emb = embed(bundle, adata, progress=False)
        keep = np.isfinite(emb).all(axis=1)
        if f"pca/{name}" not in cache:
            cache[f"pca/{name}"] = _cluster_scores(_pcs(prepare(adata)[0].X), truth[keep])
        out[name] = {"grnformer": _cluster_scores(emb[keep], truth[keep]), "PCA": cache[f"pca/{name}"],
                     "kmeans_starts": toolkit.KMEANS_SEEDS}
    return out


def thinned_pbmc3k(n_cells: int) -> tuple[Any, list[str], Callable[[Any], np.ndarray]]:
    """bench_tasks_quality's denoising protocol on ``n_cells`` PBMC3k cells (seeded): the cells with 70% of their
    counts removed, the 2,000 highly variable genes (chosen on the thinned data) a method is scored on, and the
    scorer: per-cell Spearman of a method's output (cells × all genes, dense or sparse) with the full counts."""
    import anndata as ad
    import scanpy as sc

    full, _ = prepare(datasets.load("pbmc3k"))
    rng = np.random.default_rng(0)
    full = full[np.sort(rng.choice(full.n_obs, min(n_cells, full.n_obs), replace=False))].copy()
    x = sp.csr_matrix(full.X)
    thinned = x.copy()
    thinned.data = rng.binomial(x.data.astype(np.int64), KEEP).astype(np.float32)
    thinned.eliminate_zeros()
    work = ad.AnnData(log_per_10k(thinned), var=full.var[[]].copy())
    sc.pp.highly_variable_genes(work, n_top_genes=2000, flavor="seurat")
    cols = np.flatnonzero(work.var["highly_variable"].to_numpy())
    truth = x[:, cols].toarray()
    noisy = ad.AnnData(thinned, obs=full.obs.copy(), var=full.var.copy())

    def score(output: Any) -> np.ndarray:
        out = output[:, cols]
        return per_cell_spearman(out.toarray() if sp.issparse(out) else np.asarray(out), truth)

    return noisy, list(noisy.var_names[cols]), score


def denoising(bundle, cache: dict, n_cells: int) -> dict[str, Any]:
    noisy, genes, score = thinned_pbmc3k(n_cells)
    if "knn" not in cache:
        cache["knn"] = score(knn_smooth(sp.csr_matrix(noisy.X)))
    ours = score(denoise(bundle, noisy, DenoiseOptions(genes=genes, depth_multiplier=1 / KEEP), progress=False))
    return {name: {"spearman": interval(lambda i: float(v[i].mean()), len(v))}
            for name, v in (("grnformer", ours), ("kNN smoothing", cache["knn"]))}


# ------------------------------------------------------------------------------------------------ networks

def _network_scores(net, truth, rows: set[str], seed: int = 0) -> dict[str, list[float]]:
    """AUPRC ratio and EPR over the given regulator rows, with the protocol's interval (a bootstrap of the rows
    with replacement, `bench.protocol.bootstrap`)."""
    names = net.var_names.to_numpy().astype(str)
    regs = np.array([g for g in names if g in rows])
    valid = regs[:, None] != names[None, :]
    r = protocol.bootstrap({"net": protocol.dense_rows(net, names, regs)}, truth.to_matrix(regs, names), valid,
                           n_boot=N_BOOT, seed=seed)["net"]
    return {"auprc_ratio": [r["ratio"], *r["ratio_ci"]], "epr": [r["epr"], *r["epr_ci"]], "n_rows": len(regs)}


def baseline_key(dataset: str, truth: str, method: str, genes: list[str]) -> str:
    """Where a baseline's scores are kept in the record: the pair, plus a hash of what the scores depend on (the
    protocol version, the method's version, the cells and bootstrap settings, the gene set). A changed protocol,
    library or gene set gets a new key, so old numbers are never reused for it."""
    what = [toolkit.PROTOCOL_VERSION, method_version(method), str(NETWORK_CELLS), str(N_BOOT), *genes]
    return f"{dataset} vs {truth} @{hashlib.sha1('|'.join(what).encode()).hexdigest()[:10]}"


def networks(bundle, cache: dict) -> dict[str, Any]:
    """grnformer's attention network scored beside the baselines' on bench_networks' gene sets (a third of the
    genes regulators: the most variable TFs for PBMC3k, the truth's measured regulators for the ESC sets); rows:
    TFs (PBMC3k), the truth's regulators (ESC sets, McCalla's convention). ``cache['scores']`` is kept in the
    record under `baseline_key`, so a later checkpoint does not fit GENIE3 again on the same genes."""
    from bench_networks import load_network_set

    from grnformer.data.genes import tf_symbols

    out = {}
    scores = cache.setdefault("scores", {})
    for name, truth_names in NETWORKS.items():
        adata, genes, organism = load_network_set(name, list(truth_names), bundle, NETWORK_CELLS, NETWORK_GENES)
        prepared, _ = prepare(adata)
        t = time.perf_counter()
        # the attention read-out: what training changes (the default, Spearman, does not depend on the weights)
        ours = grn(bundle, prepared, GRNOptions(genes=genes, n_genes=None, method="mean_qk"), progress=False)
        ours.var_names = ours.var["symbol"].astype(str).to_numpy()
        seconds = time.perf_counter() - t
        for truth_name in truth_names:
            truth, pair = load_truth(truth_name), f"{name} vs {truth_name}"
            rows = set(tf_symbols(organism)) if name == "pbmc3k" else set(truth.regulators)
            out[pair] = {"grnformer": {**_network_scores(ours, truth, rows), "seconds": seconds}}
            for method in ("pearson", "genie3"):
                key = baseline_key(name, truth_name, method, genes)
                if key not in scores:
                    if f"{name}/{method}" not in cache:
                        cache[f"{name}/{method}"] = infer(method, prepared, genes=genes)
                    scores[key] = _network_scores(cache[f"{name}/{method}"], truth, rows)
                out[pair][method] = scores[key]
    return out


# ---------------------------------------------------------------------------------------------------- main

def _cell_views(path: Path, base_views: int) -> int | None:
    """Cell views behind a checkpoint: a bundle's card says; a training checkpoint's step × batch, plus the views
    its run was warm-started with (scripts/campaign_ledger.json's record for runs/campaign/run-*/, else
    ``base_views``)."""
    card = path.with_suffix(".json")
    if card.is_file():
        c = json.loads(card.read_text())
        return c.get("cell_views", c["steps"] * c["batch_size"])
    meta = load_bundle(path).meta
    if "training" not in meta:
        return None
    batch = int(meta.get("run_config", {}).get("training", {}).get("batch_size", 0))
    ledger = Path(__file__).resolve().parents[1] / "scripts" / "campaign_ledger.json"
    if ledger.is_file() and len(path.parents) > 2:
        base_views = next((int(s["base_cell_views"]) for s in json.loads(ledger.read_text())["stretches"]
                           if s["run"] == path.parents[1].name), base_views)
    return int(meta["training"]["global_step"]) * batch + base_views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--denoise-cells", type=int, default=300)
    parser.add_argument("--card", type=Path, help="also write the measures into this model card (JSON), under "
                        "'quality_zero_shot' (the shipped card: src/grnformer/checkpoints/small.json)")
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/figures/checkpoint_quality.png"))
    parser.add_argument("--base-views", type=int, default=0,
                        help="cell views a training checkpoint's run started with, when no campaign ledger says")
    parser.add_argument("--out", type=Path, default=toolkit.results_path("checkpoints"))
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS),
                        help="measure only these tasks (a card keeps its other lines)")
    args = parser.parse_args()
    caches: dict[str, dict] = {k: {} for k in ("labels", "monocytes", "embeddings", "denoising", "networks")}
    found = json.loads(args.out.read_text()) if args.out.is_file() else {}
    checkpoints, baselines = found.get("checkpoints", {}), found.get("baselines", {})
    caches["networks"]["scores"] = baselines
    for ckpt in args.checkpoints:
        path = resolve_checkpoint(ckpt)
        bundle = load_bundle(path)
        t = time.perf_counter()
        # a task already measured for these weights is kept; the key has the file's digest, so a checkpoint
        # rewritten in place (the shipped one, after each stretch) is measured afresh
        row = checkpoints.setdefault(f"{ckpt}@{toolkit.checkpoint_digest(path)}", {})
        row["cell_views"] = _cell_views(path, args.base_views)
        tasks = {"labels": lambda: labels(bundle, caches["labels"]),
                 "monocytes": lambda: monocytes(bundle, caches["monocytes"]),
                 "embeddings": lambda: embeddings(bundle, caches["embeddings"]),
                 "denoising": lambda: denoising(bundle, caches["denoising"], args.denoise_cells),
                 "networks": lambda: networks(bundle, caches["networks"])}
        for task, run in tasks.items():
            if task in args.tasks and not _current(task, row.get(task)):
                row[task] = run()
                _write(args.out, checkpoints, baselines)
        row["seconds"] = time.perf_counter() - t
        if args.card:
            card = json.loads(args.card.read_text())
            lines = summary(row)
            if set(TASKS) - set(row):  # a partial measure: replace only the lines of the tasks measured now
                kept = {k: v for k, v in card.get("quality_zero_shot", {}).get("estimate [95% interval]", {}).items()
                        if not any(k.startswith(prefix) for t in args.tasks for prefix in CARD_PREFIX[t])}
                lines = {**kept, **lines}
                before = card.get("quality_zero_shot", {})
                commands = [*before.get("commands", [before["command"]] if "command" in before else []),
                            " ".join(sys.argv)]
                card["quality_zero_shot"] = {"commands": commands, "estimate [95% interval]": lines}
            else:
                card["quality_zero_shot"] = {"command": " ".join(sys.argv), "estimate [95% interval]": lines}
            write_text(args.card, json.dumps(card, indent=2))
        print(f"## {ckpt} ({row['cell_views']} cell views, {row['seconds']:.0f} s)\n{table(row)}", flush=True)
    plot(checkpoints, args.plot)


def _current(task: str, result: dict | None) -> bool:
    """Whether a stored measure follows today's protocol: embeddings only when clustered from
    `toolkit.KMEANS_SEEDS` k-means starts (rows before 2026-12-04 used one start and are measured again)."""
    if result is None:
        return False
    return task != "embeddings" or all(r.get("kmeans_starts") == toolkit.KMEANS_SEEDS for r in result.values())


def _write(out: Path, checkpoints: dict, baselines: dict) -> None:
    """The record (atomic, `bench.toolkit`): every checkpoint measured so far, keyed by name@digest, and the
    baselines' scores keyed by `baseline_key`."""
    toolkit.write_record(out, {"checkpoints": checkpoints, "baselines": baselines},
                         method={"tasks": list(TASKS), "network_method": "mean_qk", "network_genes": NETWORK_GENES,
                                 "network_cells": NETWORK_CELLS, "n_boot": N_BOOT,
                                 "kmeans_starts": toolkit.KMEANS_SEEDS,
                                 "precision": "bf16" if uses_bf16(torch.device("cpu")) else "fp32"})


def plot(results: dict, path: Path) -> None:
    """Every grnformer measure against cell views (95% intervals as bars), its best baseline as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(((r["cell_views"], name, r) for name, r in results.items()
                   if r.get("cell_views") is not None and "networks" in r),
                  key=lambda x: x[0])
    if not rows:
        return
    parsed = [_parse(r) for _, _, r in rows]
    series = [_lineage(name) for _, name, _ in rows]
    keys = list(parsed[-1])
    fig, axes = plt.subplots((len(keys) + 3) // 4, 4, figsize=(16, 3.2 * ((len(keys) + 3) // 4)))
    for ax, key in zip(axes.ravel(), keys):
        for lineage in dict.fromkeys(series):
            pts = [(v, p[key][0]) for (v, _, _), p, s in zip(rows, parsed, series) if s == lineage and key in p]
            views, est = [v for v, _ in pts], np.array([e for _, e in pts])
            # a resampled NMI is biased upwards, so its interval can sit above the estimate: bars from the estimate
            ax.errorbar(views, est[:, 0], yerr=np.maximum(0, [est[:, 0] - est[:, 1], est[:, 2] - est[:, 0]]),
                        fmt="o-", capsize=2, label=lineage)
        if parsed[-1][key][1] is not None:
            ax.axhline(parsed[-1][key][1], ls="--", color="grey", label="best baseline")
        ax.set_title(key, fontsize=8), ax.set_xlabel("cell views", fontsize=8)
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def _lineage(name: str) -> str:
    """Which run a checkpoint comes from (kept copies are filed by run under runs/campaign/kept/)."""
    if "2026-11-24" in name:
        return "model of 2026-11-24"
    return "warm start from it" if "/warm/" in name else "from scratch + co-expression prior, then warm"


def _parse(row: dict) -> dict[str, tuple[list[float], float | None]]:
    """measure -> (grnformer [estimate, low, high], the best baseline's estimate or None)."""
    out = {}
    for line in table(row).splitlines()[2:]:
        task, data, measure, ours, base = [c.strip() for c in line.strip("|").split("|")]
        if "[" not in ours:  # a count, not an estimate with an interval
            continue
        nums = [float(x) for x in ours.replace("[", " ").replace("]", " ").replace(",", " ").split()[:3]]
        baselines = [float(b.split()[-3]) for b in base.split(";") if b.strip() not in ("—", "")]
        out[f"{task}, {data}, {measure}"] = (nums, max(baselines) if baselines else None)
    return out


def summary(row: dict) -> dict[str, str]:
    """The table's numbers as 'measure -> grnformer; baselines' lines, for a model card."""
    out = {}
    for line in table(row).splitlines()[2:]:
        task, data, measure, ours, base = [c.strip() for c in line.strip("|").split("|")]
        out[f"{task} / {data} / {measure}"] = f"{ours}; {base}"
    return out


def _fmt(v: list[float]) -> str:
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def table(row: dict) -> str:
    """One markdown table: task, data, measure, grnformer and the baselines, each with its interval."""
    lines = ["| task | data | measure | grnformer | baselines |", "|---|---|---|---|---|"]
    for measure in ("accuracy", "macro_f1") if "labels" in row else ():
        lines.append(f"| labels | retina_test | {measure} | {_fmt(row['labels']['grnformer'][measure])} | "
                     f"kNN on PCA {_fmt(row['labels']['kNN on PCA'][measure])} |")
    for name, m in row.get("monocytes", {}).items():
        # older rows (before the ancestor term was counted apart) have no called_ancestor
        calls = (f"CD14 leaf {m['called_CD14']}, ancestor 'CD14-positive monocyte' {m['called_ancestor']}, "
                 f"CD16 {m['called_CD16']}, other {m['called_other']}" if "called_ancestor" in m
                 else f"CD14 or ancestor {m['called_CD14']}, CD16 {m['called_CD16']}")
        lines.append(f"| labels | PBMC3k {name} (silver labeller, {m['n_silver']} cells) | share called the same "
                     f"leaf | {m['agree']:.2f} ({calls}) | — |")
    for data, r in row.get("embeddings", {}).items():
        for measure in ("ari", "nmi"):
            lines.append(f"| embedding | {data} | {measure} | {_fmt(r['grnformer'][measure])} | "
                         f"PCA {_fmt(r['PCA'][measure])} |")
    if "denoising" in row:
        d = row["denoising"]
        lines.append(f"| denoising | PBMC3k | Spearman | {_fmt(d['grnformer']['spearman'])} | "
                     f"kNN smoothing {_fmt(d['kNN smoothing']['spearman'])} |")
    for data, r in row.get("networks", {}).items():
        for measure in ("auprc_ratio", "epr"):
            lines.append(f"| networks | {data} | {measure} | {_fmt(r['grnformer'][measure])} | "
                         f"GENIE3 {_fmt(r['genie3'][measure])}; Pearson {_fmt(r['pearson'][measure])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
