"""Per-cell-type networks on PBMC3k with the shipped model, raw maps vs the centre_q correction (issue 12.1).

Cell types: the shipped model's own predictions (`classify`), types with at least 60 cells. Genes: the demo's
choice (expressed TFs among the most variable genes first, then the most variable genes) plus SPI1, CEBPB, PAX5,
EBF1. For each correction (and for centre_q with contrast, each type minus the all-cells network): the hub measure
(largest / median row sum), every type's top 8 regulators (row sums over TF rows), the mean Jaccard overlap of the 200
strongest edges between two types, and for SPI1/CEBPB (myeloid TFs) and PAX5/EBF1 (B-cell TFs) the AUROC of their row
against their Omnipath targets in monocytes and in B cells. One pass over the cells feeds every type (grn one_pass).

    PYTHONPATH=src python benchmarks/bench_network_types.py --cells 1000 --genes 300 [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from grnformer.bench import toolkit
from grnformer.bench.truths import load_truth
from grnformer.data.corpus import datasets
from grnformer.data.corpus.labels import term_label
from grnformer.data.genes import tf_symbols
from grnformer.data.input.prepare import prepare
from grnformer.demo import _network_genes
from grnformer.inference.device import load_task_bundle
from grnformer.networks.grn import GRNOptions, grn
from grnformer.tasks.classify import classify

CHECKS = {"SPI1": "myeloid", "CEBPB": "myeloid", "PAX5": "B", "EBF1": "B"}


def _row_auroc(net, reg: str, targets: set[str]) -> float | None:
    names = list(net.var_names)
    if reg not in names:
        return None
    row = np.asarray(net.varp["GRN"])[names.index(reg)]
    labels = np.isin(names, list(targets))
    labels[names.index(reg)] = False
    keep = np.arange(len(names)) != names.index(reg)
    return float(roc_auc_score(labels[keep], row[keep])) if 0 < labels[keep].sum() < keep.sum() else None


def summarise(nets: dict, tfs: set[str], targets: dict[str, set[str]], types: dict[str, str]) -> dict:
    out: dict = {"top_regulators": {}, "hub_ratio": {}, "row_auroc": {}}
    top_edges = {}
    for g, net in nets.items():
        m = np.asarray(net.varp["GRN"]).copy()
        np.fill_diagonal(m, 0)
        names = np.asarray(net.var_names)
        rows = np.sum(m, axis=1)
        out["hub_ratio"][types[g]] = float(rows.max() / np.median(rows))
        tf_rows = np.flatnonzero(np.isin(names, list(tfs)))
        order = tf_rows[np.argsort(-rows[tf_rows])][:8]
        out["top_regulators"][types[g]] = [str(names[i]) for i in order]
        flat = np.argsort(-m, axis=None)[:200]
        top_edges[g] = set(flat.tolist())
        out["row_auroc"][types[g]] = {r: _row_auroc(net, r, targets.get(r, set())) for r in CHECKS}
    pairs = list(itertools.combinations(top_edges, 2))
    out["mean_jaccard_top200"] = float(np.mean([len(top_edges[a] & top_edges[b]) / len(top_edges[a] | top_edges[b])
                                                for a, b in pairs])) if pairs else None
    tops = list(out["top_regulators"].values())
    out["types_sharing_top8"] = len({tuple(t) for t in tops}) if tops else 0
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=1000)
    p.add_argument("--genes", type=int, default=300)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    bundle, dev = load_task_bundle("shipped", "cpu")
    adata = datasets.load("pbmc3k")
    rows = np.sort(np.random.default_rng(0).choice(adata.n_obs, min(args.cells, adata.n_obs), replace=False))
    adata = adata[rows].copy()
    classify(bundle, adata, progress=False)
    counts = adata.obs["grnformer_cell_type"].value_counts()
    groups = [g for g, n in counts.items() if n >= 60]
    types = {g: term_label(g) for g in groups}
    prepared, _ = prepare(adata, vocab=bundle.vocab)
    genes = _network_genes(prepared, args.genes)
    genes += [g for g in CHECKS if g not in genes and g in set(prepared.var["symbol"].astype(str))]
    omnipath = load_truth("omnipath").target_sets()
    result = {"cells": int(adata.n_obs), "genes": len(genes), "types": {types[g]: int(counts[g]) for g in groups}}
    for correction in ("none", "centre_q"):
        t = time.perf_counter()
        nets = grn(bundle, adata, GRNOptions(genes=genes, n_genes=None, groupby="grnformer_cell_type", groups=groups,
                                             include_all=True, correction=correction), device=dev, progress=False)
        types_all = {**types, "all": "all cells"}
        result[correction] = {"seconds": time.perf_counter() - t,
                              **summarise(nets, set(tf_symbols("human")), omnipath, types_all)}
    # contrast (grn contrast=True): each type's centre_q network minus the all-cells one, same pass
    background = np.asarray(nets["all"].varp["GRN"])
    for g in groups:
        nets[g].varp["GRN"] = np.asarray(nets[g].varp["GRN"]) - background
    result["centre_q, contrast"] = summarise({g: nets[g] for g in groups}, set(tf_symbols("human")), omnipath, types)
    result["seconds_total"] = time.perf_counter() - t0
    print(json.dumps(result, indent=1))
    if args.json:
        toolkit.write_record(args.json, result, method={"cells": args.cells, "genes": args.genes},
                             checkpoint="shipped")


if __name__ == "__main__":
    main()
