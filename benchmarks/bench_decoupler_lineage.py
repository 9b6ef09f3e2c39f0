"""Do grnformer networks give lineage TF activities with decoupler? PBMC3k, the shipped model, end to end.

    .venv/bin/python benchmarks/bench_decoupler_lineage.py            # ~3 min on 2 shared cores

1. Cell types: `grnformer classify` (obs['grnformer_cell_type']; PBMC3k carries no labels of its own), grouped
   into monocytes (every predicted term whose name says monocyte), B cells (B-cell terms) and the rest.
2. Networks on the same genes (the most variable genes plus the lineage TFs below): grnformer `mean_qk`
   (attention, the default method), grnformer `perturb` (in-silico knock-outs, signed), GENIE3 (100 trees),
   and as a control the Omnipath truth itself (weight 1). Every network's rows are TFs.
3. Each network is exported with `networks.exports` in decoupler's layout (each TF's top targets) and read back from
   the TSV; decoupler's ULM scores every cell's TF activities on log1p counts per 10k.
4. Lineage check: SPI1 should be more active in monocytes than in the other cells, PAX5 in B cells. Reported per
   network: mean activity in the own type, mean elsewhere, and the AUROC of own type vs the rest (0.5 = no
   difference). A TF with fewer than 5 targets among the network genes gets no score (decoupler's tmin).

Writes the record benchmarks/results/decoupler_lineage.json and prints a markdown table
(RESULTS.md, "decoupler lineage").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from grnformer.bench import toolkit

LINEAGE = {"SPI1": "monocyte", "PAX5": "B cell"}
EXTRA_TFS = ["SPI1", "PAX5", "CEBPB", "CEBPA", "CEBPD", "IRF8", "KLF4", "EBF1", "TCF7", "LEF1", "GATA3",
             "TBX21", "EOMES", "IRF4", "POU2AF1", "SPIB", "MAFB", "RUNX3", "BCL6", "IKZF1"]


def cell_groups(adata: AnnData) -> pd.Series:
    """'monocyte', 'B cell' or 'other' per cell, from the predicted cell-type terms."""
    from grnformer.data.corpus.labels import term_label

    names = {t: term_label(t) for t in adata.obs["grnformer_cell_type"].astype(str).unique()}
    def group(term: str) -> str:
        label = names[term].lower()
        return "monocyte" if "monocyte" in label else "B cell" if "b cell" in label else "other"
    return adata.obs["grnformer_cell_type"].astype(str).map(group)


def network_genes(adata: AnnData, n_hvg: int) -> list[str]:
    """The n_hvg most variable genes (symbols, seen in ≥ 1% of cells) plus the lineage TFs in the data."""
    import scanpy as sc

    from grnformer.data.input.expression import log_per_10k

    work = AnnData(adata.X.copy(), var=pd.DataFrame(index=adata.var_names.astype(str)))
    work.var_names_make_unique()
    sc.pp.filter_genes(work, min_cells=max(3, adata.n_obs // 100))
    work.X = log_per_10k(work.X)
    sc.pp.highly_variable_genes(work, n_top_genes=min(n_hvg, work.n_vars))
    hvg = work.var_names[work.var["highly_variable"]].tolist()
    return list(dict.fromkeys(hvg + [g for g in EXTRA_TFS if g in set(work.var_names)]))


def decoupler_activities(adata: AnnData, table: pd.DataFrame, tmin: int = 5) -> pd.DataFrame:
    """decoupler ULM activities (cells × TFs) on log1p counts per 10k of ``adata`` (symbols as var_names)."""
    import decoupler as dc

    from grnformer.data.input.expression import log_per_10k

    data = AnnData(log_per_10k(adata.X), obs=pd.DataFrame(index=adata.obs_names.astype(str)),
                   var=pd.DataFrame(index=adata.var_names.astype(str)))
    data.var_names_make_unique()
    dc.mt.ulm(data, table, tmin=tmin)
    return data.obsm["score_ulm"]


def lineage_scores(activities: pd.DataFrame, groups: pd.Series) -> dict[str, dict]:
    """Per lineage TF: mean activity in its own type and elsewhere, and the AUROC of own type vs the rest."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for tf, own in LINEAGE.items():
        if tf not in activities:
            out[tf] = {"own_type": own, "scored": False}
            continue
        act = activities[tf].to_numpy(dtype=float)
        is_own = (groups.to_numpy() == own)
        out[tf] = {"own_type": own, "scored": True, "n_own": int(is_own.sum()),
                   "mean_own": float(act[is_own].mean()), "mean_rest": float(act[~is_own].mean()),
                   "auroc": float(roc_auc_score(is_own, act))}
    return out


def omnipath_table(genes: list[str]) -> pd.DataFrame:
    """The Omnipath truth among ``genes`` as a decoupler network (weight 1), the control."""
    from grnformer.bench.truths import load_truth

    edges = load_truth("omnipath").restrict(genes).edges
    return pd.DataFrame({"source": edges["regulator"], "target": edges["target"], "weight": 1.0})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-cells", type=int, default=None, help="subsample PBMC3k (default: all 2,700)")
    parser.add_argument("--n-hvg", type=int, default=200, help="most variable genes (+ lineage TFs): the perturb "
                        "method needs them in one context (256)")
    parser.add_argument("--top-k", type=int, nargs="+", default=[5, 10, 20, 50], help="targets exported per TF "
                        "(each value scored)")
    parser.add_argument("--out", default=str(toolkit.results_path("decoupler_lineage")))
    args = parser.parse_args()

    import torch

    import grnformer as gf
    from grnformer.bench.baselines import infer
    from grnformer.data.corpus import datasets
    from grnformer.data.genes import tf_symbols
    from grnformer.networks.exports import write_edges

    torch.set_num_threads(2)
    t0 = time.time()
    adata = datasets.load("pbmc3k")
    if args.max_cells:
        adata = adata[np.sort(np.random.default_rng(0).choice(adata.n_obs, args.max_cells, replace=False))].copy()
    model = gf.load("shipped", progress=False)
    model.classify(adata)
    groups = cell_groups(adata)
    genes = network_genes(adata, args.n_hvg)
    tsv = Path(args.out).with_suffix("")
    tsv.mkdir(parents=True, exist_ok=True)
    networks = {
        "grnformer mean_qk": lambda: model.grn(adata, genes=genes, n_genes=None),
        # knock out every TF among the genes (TFs come first among the regulators perturb chooses)
        "grnformer perturb": lambda: model.perturb(adata, genes=genes, n_genes=None,
                                                   max_regulators=len(set(genes) & tf_symbols("human"))),
        "GENIE3": lambda: infer("genie3", adata, genes=genes, n_estimators=100, n_jobs=2),
    }
    results, timings = {}, {}
    for name, make in networks.items():
        t = time.time()
        net = make()
        timings[name] = time.time() - t
        for k in args.top_k:
            path = write_edges(net, tsv / f"{name.replace(' ', '_')}_top{k}.tsv", "decoupler", k, "tfs")
            table = pd.read_csv(path, sep="\t")
            results[f"{name}, top {k}"] = {"edges": len(table), "tfs": int(table["source"].nunique()),
                                           **lineage_scores(decoupler_activities(adata, table), groups)}
    control = omnipath_table(genes)
    results["Omnipath (control)"] = {"edges": len(control), "tfs": int(control["source"].nunique()),
                                     **lineage_scores(decoupler_activities(adata, control), groups)}
    record = {"settings": vars(args), "cells": int(adata.n_obs), "groups": groups.value_counts().to_dict(),
              "genes": len(genes), "top_k": args.top_k, "results": results, "seconds": timings,
              "total_seconds": time.time() - t0}
    toolkit.write_record(args.out, record, method={"networks": list(results), "top_k": args.top_k},
                         checkpoint="shipped")
    print(f"{adata.n_obs} cells ({record['groups']}), {len(genes)} genes; network seconds {timings}")
    print("| network | edges (TFs) | SPI1: monocytes vs rest (AUROC) | PAX5: B cells vs rest (AUROC) |")
    print("|---|---|---|---|")
    for name, r in results.items():
        cells = [f"{r[tf]['mean_own']:.2f} vs {r[tf]['mean_rest']:.2f} ({r[tf]['auroc']:.2f})" if r[tf]["scored"]
                 else "no score (< 5 targets)" for tf in LINEAGE]
        print(f"| {name} | {r['edges']} ({r['tfs']}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
