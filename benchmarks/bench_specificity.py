"""Per-type networks that differ where the cell types differ: lineage TFs among each type's regulators (issue 31).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_specificity.py [--n-boot 200] \
        [--out benchmarks/results/specificity.json]

Truth: the lineage TFs of `grnformer.bench.lineage_tfs` (literature, sources there). Cells pooled into lineages by
Cell Ontology (`lineage_of`); one network per lineage with at least `MIN_CELLS` cells, the other cells count
among all cells ('share' splits the all-cells correlation). Genes: TFs + 500 (`hvg+tfs`) plus every lineage TF
the data holds (so that each can be ranked), TF rows.
- Development (chooses the specificity): PBMC3k, silver labels (marker genes per k-means cluster,
  `data.corpus.silver`; no model involved).
- Evaluation (reported only): zheng2017_sorted_pbmc_facs, labels from FACS sorting (`data.corpus.author_labels`).
Scores per specificity and lineage: the rank of each lineage TF among the regulators by out-strength
(`networks.specificity.regulator_strength`; 1 = strongest), how many of them are in the top 10, and the top-10
overlap of the two largest lineages. Intervals: 95% percentile bootstrap over cells (`bench.toolkit`, resampled
with replacement; networks recomputed from the same functions grn uses). Timing: each grn call on the same cells,
side by side.
The model's read-outs (per-type attention: plain, minus the all-cells network, z-score over types; diffnet of each
lineage against the other cells) are candidates too: on development only, fewer cells (`--model-cells`), point
estimates (a resample would be another pass of the model).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from grnformer.bench import toolkit
from grnformer.bench.lineage_tfs import GOAL_LINEAGES, LINEAGES, OTHER, lineage_tfs, lineages_of
from grnformer.bench.toolkit import checkpoint_digest
from grnformer.bundle.checkpoint import resolve_checkpoint
from grnformer.data.corpus import datasets
from grnformer.data.corpus.author_labels import cell_types
from grnformer.data.corpus.silver import pbmc_cell_types
from grnformer.data.input.expression import log_per_10k
from grnformer.inference.device import load_task_bundle
from grnformer.inference.gene_sets import select_genes
from grnformer.inference.prepared import prepare_input
from grnformer.networks.from_data import abs_spearman
from grnformer.networks.grn import GRNOptions, grn
from grnformer.networks.grn_options import SPECIFICITIES
from grnformer.networks.network_adata import network_names
from grnformer.networks.specificity import regulator_strength, specific_matrices, top_overlap

DATASETS = {"development": "pbmc3k", "evaluation": "zheng2017_sorted_pbmc_facs"}
MIN_CELLS = 50
TOP = 10
COLUMN = "lineage"


def _labelled(name: str):
    adata = datasets.load(name)
    terms = pbmc_cell_types(adata) if name == "pbmc3k" else cell_types(name, adata.obs)
    adata.obs[COLUMN] = lineages_of(terms.astype(str))
    return adata


def _genes(bundle, adata) -> list[str]:
    prep = prepare_input(bundle, adata)
    names = network_names(prep, select_genes(prep, "hvg+tfs", 500)).tolist()
    symbols = set(prep.adata.var["symbol"].astype(str))
    return list(dict.fromkeys(names + [tf for lin in LINEAGES for tf in lin.tfs if tf in symbols]))


def _scores(nets: dict[str, np.ndarray], regulators: np.ndarray, names: np.ndarray, largest: list[str]
            ) -> np.ndarray:
    """[rank of every lineage TF in its own lineage's network …, top-10 overlap of the two largest lineages]."""
    out, tops = [], {}
    for g, m in nets.items():
        order = regulator_strength(m, regulators, names).index.tolist()
        tops[g] = order[:TOP]
        out += [order.index(tf) + 1 if tf in order else np.nan for tf in lineage_tfs(g)]
    return np.array(out + [top_overlap(tops[largest[0]], tops[largest[1]])], dtype=np.float64)


def _networks(kind: str, x: np.ndarray, lineage: np.ndarray, groups: list[str]) -> dict[str, np.ndarray]:
    """The networks grn forms (spearman), from arrays: the plain per-lineage ones, or their specificity."""
    plain = {g: abs_spearman(x[lineage == g]) for g in groups}
    if kind == "none":
        return plain
    return specific_matrices(kind, plain, {g: lineage == g for g in groups}, x, "spearman")


def run_dataset(role: str, name: str, bundle, n_boot: int) -> dict:
    adata = _labelled(name)
    counts = adata.obs[COLUMN].value_counts()
    groups = [g for g, n in counts.items() if n >= MIN_CELLS and g != OTHER]
    largest = groups[:2]
    genes = _genes(bundle, adata)
    nets, seconds = {}, {}
    grn(bundle, adata, GRNOptions(genes=genes, n_genes=None, groupby=COLUMN, groups=groups), progress=False)  # warm
    for kind in SPECIFICITIES:
        t0 = time.perf_counter()
        nets[kind] = grn(bundle, adata, GRNOptions(genes=genes, n_genes=None, groupby=COLUMN, groups=groups,
                                                   specificity=kind), progress=False)
        seconds[kind] = time.perf_counter() - t0
    first = nets["none"][groups[0]]
    names, regulators = first.var_names.to_numpy(), first.var["is_regulator"].to_numpy(bool)
    prep = prepare_input(bundle, adata)
    cols = prep.adata.var_names.get_indexer(first.var["gene_id"].to_numpy())
    x = np.asarray(log_per_10k(prep.adata.X)[:, cols].toarray(), dtype=np.float32)
    lineage = prep.adata.obs[COLUMN].astype(str).to_numpy()
    for kind in SPECIFICITIES:  # the arrays the bootstrap resamples give grn's networks on all cells
        again = _networks(kind, x, lineage, groups)
        assert all(np.allclose(again[g][regulators], np.asarray(nets[kind][g].varp["GRN"])[regulators], atol=1e-4)
                   for g in groups), kind
    stats = {kind: (lambda units, kind=kind: _scores(_networks(kind, x[units], lineage[units], groups),
                                                     regulators, names, largest)) for kind in SPECIFICITIES}
    boot = toolkit.bootstrap(stats, len(x), n_boot)
    tf_index = [(g, tf) for g in groups for tf in lineage_tfs(g)]
    results = {}
    for kind in SPECIFICITIES:
        per_lineage = {}
        for g in groups:
            order = regulator_strength(nets[kind][g].varp["GRN"], regulators, names)
            ranks = {tf: boot.estimate(kind, tf_index.index((g, tf))) for tf in lineage_tfs(g)}
            top = order.index[:TOP].tolist()
            per_lineage[g] = {"cells": int(counts[g]), "lineage_tf_rank": ranks,
                              "lineage_tfs_in_data": [tf for tf in lineage_tfs(g) if tf in set(names)],
                              "in_top10": [tf for tf in lineage_tfs(g) if tf in top],
                              "top10": [[r, round(float(order[r]), 4)] for r in top]}
        goal = [g for g in GOAL_LINEAGES if g in per_lineage]
        results[kind] = {
            "lineages": per_lineage,
            "top10_overlap_two_largest": boot.estimate(kind, len(tf_index)),
            "goal_every_lineage_tf_in_top10": all(set(per_lineage[g]["in_top10"]) ==
                                                  set(per_lineage[g]["lineage_tfs_in_data"]) for g in goal),
            "goal_a_lineage_tf_in_top10": all(per_lineage[g]["in_top10"] for g in goal),
            "goal_overlap_at_most_5": boot.point[kind][len(tf_index)] <= 5,
            "seconds_grn": seconds[kind], "seconds_ratio_to_plain": seconds[kind] / seconds["none"]}
        print(role, kind, f"{seconds[kind]:.1f} s, overlap {results[kind]['top10_overlap_two_largest']}", flush=True)
        for g in groups:
            print("   ", g, {tf: r[0] for tf, r in per_lineage[g]["lineage_tf_rank"].items()},
                  [t for t, _ in per_lineage[g]["top10"][:6]], flush=True)
    return {"dataset": name, "labels": "silver (markers per k-means cluster)" if name == "pbmc3k" else
            "FACS-sorted populations (authors)", "cells": int(adata.n_obs), "cells_per_lineage": counts.to_dict(),
            "networks": groups, "two_largest": largest, "genes": len(genes), "tf_rows": int(regulators.sum()),
            "results": results}


def _ranks_and_overlap(strength: dict[str, pd.Series], largest: list[str]) -> dict:
    """Per lineage: its lineage TFs' ranks in its own ranking, the top 10; and the two largest lineages' overlap."""
    out = {g: {"lineage_tf_rank": {tf: (order.index.tolist().index(tf) + 1 if tf in order.index else None)
                                   for tf in lineage_tfs(g)}, "top10": order.index[:TOP].tolist()}
           for g, order in strength.items()}
    return {"lineages": out, "top10_overlap_two_largest": top_overlap(out[largest[0]]["top10"],
                                                                      out[largest[1]]["top10"])}


def model_readouts(role: str, name: str, bundle, max_cells: int) -> dict:
    """The model's per-type attention (mean_qk: plain, minus the all-cells network (--contrast), z-score over
    types) and diffnet of each lineage against the other cells (a regulator's score: its summed positive z, edges
    stronger in the lineage), on at most ``max_cells`` cells per lineage: point estimates (each resample would be
    another pass of the model)."""
    from grnformer.networks.diffnet import diffnet
    from grnformer.networks.grn_options import DiffNetOptions

    adata = _labelled(name)
    counts = adata.obs[COLUMN].value_counts()
    groups = [g for g, n in counts.items() if n >= MIN_CELLS and g != OTHER]
    genes = _genes(bundle, adata)
    out = {}
    for label, extra in (("attention, plain", {}), ("attention, minus all cells (--contrast)", {"contrast": True}),
                         ("attention, zscore", {"specificity": "zscore"})):
        t0 = time.perf_counter()
        nets = grn(bundle, adata, GRNOptions(genes=genes, n_genes=None, groupby=COLUMN, groups=groups,
                                             method="mean_qk", max_cells=max_cells, **extra), progress=False)
        strength = {g: regulator_strength(n.varp["GRN"], n.var["is_regulator"].to_numpy(bool), n.var_names)
                    for g, n in nets.items()}
        out[label] = {**_ranks_and_overlap(strength, groups[:2]), "seconds": time.perf_counter() - t0}
        print(role, label, out[label], flush=True)
    t0, strength = time.perf_counter(), {}
    for g in groups:
        adata.obs["versus"] = np.where(adata.obs[COLUMN] == g, g, "rest")
        table, _ = diffnet(bundle, adata, "versus", g, "rest",
                           DiffNetOptions(genes=genes, n_genes=None, max_cells=max_cells, n_permutations=50),
                           progress=False)
        strength[g] = table.assign(up=table["z"].clip(lower=0)).groupby("regulator")["up"].sum() \
            .sort_values(ascending=False, kind="stable")
    out["diffnet, lineage vs rest"] = {**_ranks_and_overlap(strength, groups[:2]),
                                       "seconds": time.perf_counter() - t0}
    print(role, "diffnet", out["diffnet, lineage vs rest"], flush=True)
    return {"max_cells_per_lineage": max_cells, "readouts": out}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-boot", type=int, default=toolkit.N_BOOT)
    ap.add_argument("--model-cells", type=int, default=60, help="cells per lineage for the model's read-outs "
                    "(attention, diffnet; development only, on CPU ~10 min at 60); 0 skips them")
    ap.add_argument("--checkpoint", default="shipped")
    ap.add_argument("--out", default="benchmarks/results/specificity.json")
    args = ap.parse_args(argv)
    path = resolve_checkpoint(args.checkpoint)
    bundle, _ = load_task_bundle(path)
    body = {role: run_dataset(role, name, bundle, args.n_boot) for role, name in DATASETS.items()}
    if args.model_cells:  # candidates for the choice, so development only
        body["development"]["model"] = model_readouts("development", DATASETS["development"], bundle,
                                                      args.model_cells)
    out = toolkit.write_record(args.out, {**body, "n_boot": args.n_boot},
                               method={"method": "spearman", "specificities": list(SPECIFICITIES),
                                       "genes": "hvg+tfs 500 + lineage TFs", "min_cells": MIN_CELLS,
                                       "model_cells": args.model_cells},
                               checkpoint=args.checkpoint if args.model_cells else None,
                               digest=checkpoint_digest(path) if args.model_cells else None,
                               command=toolkit.command_line(argv))
    print("wrote", out)


if __name__ == "__main__":
    main()
