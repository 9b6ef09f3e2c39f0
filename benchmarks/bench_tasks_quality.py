"""Quality of the zero-shot tasks with a trained checkpoint: denoising, label prediction, embedding clusters.

    .venv/bin/python benchmarks/bench_tasks_quality.py --ckpt CKPT

Denoising (PBMC3k): 70% of every cell's counts are removed by binomial thinning (seeded); each method sees only
the thinned counts and is scored, per cell, by the Spearman correlation of its output with the full counts over
the genes the full profile expresses, among 2,000 highly variable genes chosen on the thinned data. Methods: the
thinned counts themselves, kNN smoothing (mean of the 15 nearest cells' normalised counts in a 50-PC space of
the thinned data), MAGIC (PyPI magic-impute, when importable) and grnformer (denoise() on those genes, told the
original depth: depth_multiplier = 1 / 0.3, as in pre-training).

Labels (retina): the named datasets retina_train / retina_test split the retina 70/30 within each cell type; a
checkpoint trained on retina_train (the shipped one is) is tested on retina_test, cells it never saw (other
files: --retina-test / --retina-train). classify() accuracy and macro-F1 (strict and ontology-aware) beside the
majority class and a kNN classifier on PCA fitted to the training split.
Networks (PBMC3k): one grn() run over 1,000 highly variable genes keeps every head's map; its mean is the 'kq'
network and the mean of the transposed maps the 'qk' one. Both are scored against Omnipath and ENCODE ChIP
(bench.network_scores.score_network, all pairs and TF rows only), then heads are selected on Omnipath with a split of
regulators and scored on the held-out regulators, per direction.
Embeddings (same test cells): k-means with k = number of cell types on obsm['X_grnformer'] (cell and cell-type
token) and on 50 PCs of log-normalised counts; ARI and NMI with the true types, and silhouette of the true
types (cosine). Results go to the record benchmarks/results/tasks_quality.json and print as markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.metrics import (
    adjusted_rand_score,
    normalized_mutual_info_score,
    silhouette_score,
)
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from grnformer.bench import toolkit
from grnformer.bundle.checkpoint import load_bundle
from grnformer.data.corpus import datasets
from grnformer.data.corpus.labels import column
from grnformer.data.input.expression import counts_per_10k, log_per_10k
from grnformer.data.input.prepare import prepare
from grnformer.errors import InputError
from grnformer.tasks.classify import classify
from grnformer.tasks.denoise import denoise
from grnformer.tasks.embed import embed
from grnformer.tasks.task_options import DenoiseOptions

KEEP = 0.3  # fraction of counts kept: 70% removed
N_GENES = 2000
CELL_TYPE = column("cell_type")


# ----------------------------------------------------------------------------------------------- denoising

def _pcs(x: sp.csr_matrix, n: int = 50, seed: int = 0) -> np.ndarray:
    """Principal components of log-normalised counts (centred through a dense copy: fine at these sizes)."""
    logx = log_per_10k(sp.csr_matrix(x)).toarray()
    logx -= logx.mean(axis=0)
    return TruncatedSVD(n_components=min(n, min(logx.shape) - 1), random_state=seed).fit_transform(logx)


def knn_smooth(noisy: sp.csr_matrix, k: int = 15, seed: int = 0) -> np.ndarray:
    """Each cell's normalised counts averaged with its k nearest cells' (self included) in PC space."""
    pcs = _pcs(noisy, seed=seed)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(pcs).kneighbors(pcs)
    norm = counts_per_10k(noisy)
    return np.stack([np.asarray(norm[row].mean(axis=0)).ravel() for row in idx])


def magic_impute(noisy: sp.csr_matrix, seed: int = 0) -> np.ndarray | None:
    """MAGIC on library-size-normalised, square-rooted counts (its authors' recipe); None when not installed."""
    try:
        import magic
    except ImportError:
        return None
    x = np.sqrt(counts_per_10k(noisy).toarray())
    return np.asarray(magic.MAGIC(random_state=seed, verbose=0).fit_transform(x))


def per_cell_spearman(pred: np.ndarray, full: np.ndarray, min_genes: int = 10) -> np.ndarray:
    """Spearman of each cell's prediction with its full counts over the genes the full profile expresses."""
    out = []
    for p, f in zip(pred, full):
        on = f > 0
        if on.sum() >= min_genes and np.ptp(f[on]) > 0:
            rho = spearmanr(p[on], f[on]).statistic
            out.append(0.0 if np.isnan(rho) else rho)  # a constant prediction carries no ranking
    return np.asarray(out)


def denoising(bundle, n_cells: int | None, seed: int, batch_size: int, device: str | None) -> dict[str, Any]:
    full, _ = prepare(datasets.load("pbmc3k"))
    rng = np.random.default_rng(seed)
    if n_cells is not None and n_cells < full.n_obs:
        full = full[np.sort(rng.choice(full.n_obs, n_cells, replace=False))].copy()
    x = sp.csr_matrix(full.X)
    thinned = x.copy()
    thinned.data = rng.binomial(x.data.astype(np.int64), KEEP).astype(np.float32)
    thinned.eliminate_zeros()
    keep_cells = np.asarray(thinned.sum(axis=1)).ravel() > 0
    x, thinned = x[keep_cells], thinned[keep_cells]
    noisy = ad.AnnData(thinned, obs=full.obs.iloc[np.flatnonzero(keep_cells)].copy(), var=full.var.copy())

    import scanpy as sc

    work = ad.AnnData(log_per_10k(thinned), var=full.var[[]].copy())
    sc.pp.highly_variable_genes(work, n_top_genes=N_GENES, flavor="seurat")
    cols = np.flatnonzero(work.var["highly_variable"].to_numpy())
    full_g, noisy_g = x[:, cols].toarray(), thinned[:, cols]
    results: dict[str, Any] = {"n_cells": int(noisy.n_obs), "n_genes": int(len(cols)), "fraction_removed": 1 - KEEP}
    scores = {"thinned counts": per_cell_spearman(noisy_g.toarray(), full_g)}
    t = time.perf_counter()
    scores["kNN smoothing (k=15, 50 PCs)"] = per_cell_spearman(knn_smooth(thinned, seed=seed)[:, cols], full_g)
    results["seconds_knn"] = time.perf_counter() - t
    t = time.perf_counter()
    magic_out = magic_impute(noisy_g, seed=seed)
    results["seconds_magic"] = time.perf_counter() - t
    if magic_out is not None:
        scores["MAGIC (magic-impute)"] = per_cell_spearman(magic_out, full_g)
    t = time.perf_counter()
    layer = denoise(bundle, noisy, DenoiseOptions(genes=list(noisy.var_names[cols]), depth_multiplier=1 / KEEP,
                                                  batch_size=batch_size, seed=seed), device=device)
    results["seconds_grnformer"] = time.perf_counter() - t
    scores["grnformer (ZINB mean)"] = per_cell_spearman(layer[:, cols].toarray(), full_g)
    results["spearman"] = {k: {"mean": float(v.mean()), "median": float(np.median(v)), "n_cells": int(len(v))}
                           for k, v in scores.items()}
    results["magic_installed"] = magic_out is not None
    return results


# ------------------------------------------------------------------------------------------------ networks

def networks(bundle, n_genes: int, max_cells: int | None, seed: int, batch_size: int, device: str | None
             ) -> dict[str, Any]:
    """Both attention directions, and head selection per direction, against real ground truths."""
    from grnformer.bench.network_scores import score_network
    from grnformer.bench.truths import load_truth
    from grnformer.networks.grn import GRNOptions, grn
    from grnformer.networks.heads import select_heads

    t = time.perf_counter()
    net = grn(bundle, datasets.load("pbmc3k"), GRNOptions(genes="hvg", n_genes=n_genes, keep_heads=True,
                                                        max_cells=max_cells, batch_size=batch_size, seed=seed),
              device=device)
    out: dict[str, Any] = {"n_genes": int(net.n_vars), "n_cells": int(net.n_obs), "seconds": time.perf_counter() - t}
    cube_kq = np.asarray(net.uns["grn_heads"])
    cubes = {"kq": cube_kq, "qk": cube_kq.transpose(0, 2, 1)}
    c = bundle.config
    names = list(net.var_names)
    for truth_name in ("omnipath", "encode_chip"):
        truth = load_truth(truth_name)
        for direction, cube in cubes.items():
            scored = net.copy()
            scored.varp["GRN"] = cube.mean(axis=0)
            for universe in ("all", "tf"):
                m = score_network(scored, truth, universe=universe)
                out[f"{truth_name}/{direction}/{universe}"] = {k: m[k] for k in ("auprc", "random_precision", "epr",
                                                                                   "auroc", "n_true")}
            if truth_name == "omnipath":
                try:
                    sel = select_heads(cube, truth.edges, c.n_layers, c.n_heads, direction, genes=names,
                                       split="regulators", seed=seed)
                    out[f"heads/{direction}"] = sel.to_dict()
                except InputError as err:  # too few edges among these genes: say so in the report
                    out[f"heads/{direction}"] = {"error": str(err)}
    return out


# ------------------------------------------------------------------------------------------ labels, embeddings

def _clusters(rep: np.ndarray, truth: np.ndarray, seed: int) -> dict[str, float]:
    k = len(np.unique(truth))
    found = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(rep)
    return {"ari": float(adjusted_rand_score(truth, found)), "nmi": float(normalized_mutual_info_score(truth, found)),
            "silhouette_true_types": float(silhouette_score(rep, truth, metric="cosine"))}


def labels_and_embeddings(bundle, test_path: Path | None, train_path: Path | None, seed: int, batch_size: int,
                          device: str | None) -> dict[str, Any]:
    test = ad.read_h5ad(test_path) if test_path else datasets.load("retina_test")
    results: dict[str, Any] = {"test_cells": int(test.n_obs),
                               "test_file": str(test_path) if test_path else "retina_test (named split)"}
    metrics = classify(bundle, test, batch_size=batch_size, device=device, seed=seed)
    results["classify"] = metrics
    truth = test.obs[CELL_TYPE].astype(str).to_numpy()
    majority = max(set(truth), key=list(truth).count)
    results["majority_class_accuracy"] = float(np.mean(truth == majority))
    prepared_test, _ = prepare(test, vocab=bundle.vocab)
    train, _ = prepare(ad.read_h5ad(train_path) if train_path else datasets.load("retina_train"), vocab=bundle.vocab)
    genes = train.var_names.intersection(prepared_test.var_names)
    both = _pcs(sp.vstack([train[:, genes].X, prepared_test[:, genes].X]).tocsr(), seed=seed)
    knn = KNeighborsClassifier(n_neighbors=15).fit(both[: train.n_obs], train.obs[CELL_TYPE].astype(str))
    pred = knn.predict(both[train.n_obs:])
    results["knn_on_pca_accuracy"] = float(np.mean(pred == prepared_test.obs[CELL_TYPE].astype(str).to_numpy()))
    reps = {"PCA (50 PCs of log-normalised counts)": _pcs(prepared_test.X, seed=seed)}
    for source in ("cell", "cell_type"):
        if source == "cell" or "cell_type" in bundle.config.label_sizes:
            emb = embed(bundle, test, source=source, batch_size=batch_size, device=device, seed=seed)
            reps[f"grnformer {source} token"] = emb
    results["clusters"] = {name: _clusters(rep, prepared_test.obs[CELL_TYPE].astype(str).to_numpy(), seed)
                           for name, rep in reps.items()}
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", help="trained checkpoint (bundle or Lightning .ckpt)")
    p.add_argument("--retina-test", dest="retina_test", help="h5ad of labelled cells the checkpoint never saw "
                   "(default: the named split retina_test)")
    p.add_argument("--retina-train", dest="retina_train", help="their training split, for the kNN baseline "
                   "(default: retina_train)")
    p.add_argument("--denoise-cells", dest="denoise_cells", type=int, default=None,
                   help="PBMC3k cells for denoising (default: all 2,700)")
    p.add_argument("--skip-denoise", action="store_true")
    p.add_argument("--skip-networks", action="store_true")
    p.add_argument("--network-genes", dest="network_genes", type=int, default=1000)
    p.add_argument("--network-cells", dest="network_cells", type=int, default=1000,
                   help="PBMC3k cells drawn for the networks (default 1,000)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    p.add_argument("--device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(toolkit.results_path("tasks_quality")))
    args = p.parse_args(argv)
    if not args.ckpt:
        p.error("--ckpt is needed")
    bundle = load_bundle(args.ckpt)
    report: dict[str, Any] = {}
    if not args.skip_denoise:
        report["denoising"] = denoising(bundle, args.denoise_cells, args.seed, args.batch_size, args.device)
    if not args.skip_networks:
        report["networks"] = networks(bundle, args.network_genes, args.network_cells, args.seed, args.batch_size,
                                      args.device)
    report["labels"] = labels_and_embeddings(bundle, Path(args.retina_test) if args.retina_test else None,
                                             Path(args.retina_train) if args.retina_train else None,
                                             args.seed, args.batch_size, args.device)
    toolkit.write_record(args.out, report, method={"tasks": list(report), "seed": args.seed},
                         checkpoint=args.ckpt, command=toolkit.command_line(argv))
    if "denoising" in report:
        d = report["denoising"]
        print(f"denoising, PBMC3k, {d['n_cells']} cells × {d['n_genes']} HVGs, 70% of counts removed")
        print("| method | Spearman mean | median |\n|---|---|---|")
        for k, v in d["spearman"].items():
            print(f"| {k} | {v['mean']:.3f} | {v['median']:.3f} |")
    if "networks" in report:
        n = report["networks"]
        print(f"networks, PBMC3k, {n['n_cells']} cells × {n['n_genes']} genes (mean of all heads)")
        print("| truth / direction / rows | AUPRC | random | EPR | AUROC |\n|---|---|---|---|---|")
        for k, v in n.items():
            if isinstance(v, dict) and "auprc" in v:
                print(f"| {k} | {v['auprc']:.4f} | {v['random_precision']:.4f} | {v['epr']:.2f} | {v['auroc']:.3f} |")
        for d in ("kq", "qk"):
            h = n.get(f"heads/{d}", {})
            if "metrics" in h:
                m = h["metrics"]
                print(f"heads {d}: held-out AUPRC selected {m['selected']['auprc']:.4f} vs mean "
                      f"{m['mean_of_heads']['auprc']:.4f} (random {m['test_random_precision']:.4f}); "
                      f"heads {[(x['layer'], x['head'], round(x['weight'], 3)) for x in h['heads']]}")
            elif h:
                print(f"heads {d}: {h.get('error')}")
    lab = report["labels"]
    print(f"labels, {lab['test_file']} ({lab['test_cells']} cells)")
    print(json.dumps({"classify": lab["classify"].get("cell_type"), "majority": lab["majority_class_accuracy"],
                      "knn_on_pca": lab.get("knn_on_pca_accuracy")}, default=float))
    print("| representation | ARI | NMI | silhouette |\n|---|---|---|---|")
    for k, v in lab["clusters"].items():
        print(f"| {k} | {v['ari']:.3f} | {v['nmi']:.3f} | {v['silhouette_true_types']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
