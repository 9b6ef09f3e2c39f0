"""Networks from few cells (issue 28 §4): every network method on random subsamples of 50, 100, 200 and 500 cells of
each DEVELOPMENT dataset of the network protocol (`bench.protocol`), ranked per size, and the rule in code
(`few_cells_rule`) that says whether the default should depend on the cell count. Per-type networks in an atlas
are built from 30–300 cells; the protocol scores all cells of each set.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_few_cells.py [--sizes 50 100 200 500] [--seeds 0 1 2] \
        [--datasets NAME ...] [--out benchmarks/results/few_cells.json]

Methods: the grn methods spearman (the default), pearson and mean_qk (the model's attention read-out, the shipped
checkpoint), all through `grn` as the protocol runs them; metacell_k5 / metacell_k15 + spearman (|Spearman rho| of
`networks.metacells.pooled_expression`, each cell averaged with its 5 or 15 nearest neighbours in a PCA of the
same log-normalised network genes grn's Spearman reads); boosted (`grn --method boosted`'s booster) and GENIE3.

Scoring is the protocol's: its development pairs, AUPRC ratio over the pair's candidate edges, one figure per
dataset × truth (here the mean over seeds), the 10-regulator floor, the median over figures, and the rule
(`protocol.robust_scores` + `protocol.choose_default`, GENIE3 the reference and never a candidate) applied at each
size. Intervals: a bootstrap over regulator rows (`protocol.ratio_statistics`, `toolkit.bootstrap`, seed 0) per
subsample; a size's aggregate interval takes, on each replicate, the median over figures of the seed mean.

Choices that keep the run within ~40 minutes on one CPU thread (each differs from the protocol run):
- one gene set, TFs+500 (BEELINE's own for hHEP and mHSC-L; PBMC3k and Liu: `select_genes('hvg+tfs', 500)` on
  all cells, so every subsample of a set scores the same genes);
- GENIE3 with 20 trees (the protocol: 50), every cell (a subsample is at most 500); its cost for the speed rule is
  scaled to 50 trees (a forest's time is linear in its trees);
- trees are fitted once per subsample on the union of its pairs' regulators (the protocol fits per pair);
- 50 bootstrap replicates (the protocol: 200): hHEP's pairs have 300–400 rows × 943 genes;
- sizes above a set's cells are skipped: Liu hESC (72 cells) is only at 50, hHEP (425) up to 200, so the datasets
  behind each size differ; `common_winners` repeats the rule on the datasets present at every size.
Networks are cached under benchmarks/out/protocol_cache as the protocol's (keys include the subsample).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bench_protocol import (
    code_version,
    data_hash,
    load_data,
    load_model,
    pair_regulators,
    pair_truth,
    run_baseline,
    run_component,
    truth_hash,
)

from grnformer.bench import protocol, toolkit
from grnformer.bench.baselines import method_version
from grnformer.data.input.expression import log_per_10k
from grnformer.inference.gene_sets import select_genes
from grnformer.inference.prepared import prepare_input
from grnformer.networks.from_data import abs_spearman
from grnformer.networks.metacells import pooled_expression
from grnformer.networks.network_adata import network_names

SIZES = (50, 100, 200, 500)
SEEDS = (0, 1, 2)
GENE_SET = 500  # TFs + 500
TREES = 20
PROTOCOL_TREES = 50
N_BOOT = 50
K_VALUES = (5, 15)
GRN_METHODS = ("spearman", "pearson", "mean_qk")
REFERENCE = "genie3"
DEFAULT = "spearman"  # grn's default method (networks/grn_options.py), what a rule departs from


def metacell_name(k: int) -> str:
    return f"metacell_k{k}+spearman"


def dataset_genes(bundle, name: str):
    """(all cells of a development set, its TFs+500 network genes), chosen once on every cell."""
    adata, _ = load_data(name, GENE_SET)
    prep = prepare_input(bundle, adata)
    cols = np.arange(prep.adata.n_vars) if name in protocol.BEELINE_SETS else select_genes(prep, "hvg+tfs", GENE_SET)
    return adata, network_names(prep, cols).tolist()


def metacell_network(prep, genes: list[str], k: int, seed: int) -> np.ndarray:
    """|Spearman rho| of the kNN-pooled log expression of the network genes (the values grn's Spearman reads)."""
    cols = pd.Index(network_names(prep, np.arange(prep.adata.n_vars))).get_indexer(genes)
    x = log_per_10k(prep.adata.X)[:, cols].toarray()
    return abs_spearman(pooled_expression(x, k=k, seed=seed))


def run_subsample(bundle, name: str, adata, genes: list[str], size: int, seed: int, args) -> tuple[list, dict]:
    """Every method on one random subsample of ``size`` cells: a row per pair × method (ratio, EPR, intervals,
    paired differences from Spearman and GENIE3, seconds) and each row's bootstrap replicates of the ratio."""
    cells = np.sort(toolkit.rng(seed).choice(adata.n_obs, size, replace=False))
    sub = adata[cells].copy()
    tag = f"{name}_n{size}_s{seed}"
    args.hashes["subsamples"][tag] = protocol.content_hash(sub.obs_names.to_numpy(dtype=object))
    prep = prepare_input(bundle, sub)
    names = np.asarray(genes)
    nets, seconds = {}, {}
    for m in GRN_METHODS:
        nets[m], seconds[m] = run_component(bundle, sub, genes, m, tag, args)
    for k in K_VALUES:
        t0 = time.perf_counter()
        nets[metacell_name(k)] = metacell_network(prep, genes, min(k, size - 1), seed)
        seconds[metacell_name(k)] = seconds["spearman"] + time.perf_counter() - t0  # grn would read the data too
    pairs = [p for p in protocol.pairs(protocol.DEVELOPMENT) if p.dataset == name]
    truths, features = {}, set()
    for pair in pairs:
        truths[pair] = pair_truth(pair, GENE_SET)
        features |= set(pair_regulators(pair, GENE_SET, truths[pair], names, prep.organism)[1])
    features_sorted = names[np.isin(names, list(features))]
    base = sub if name in protocol.BEELINE_SETS else prep.adata  # as the protocol: BEELINE values as given
    for m, kw in ((REFERENCE, {"n_estimators": args.trees}), ("boosted", {})):
        nets[m], seconds[m] = run_baseline(m, base, tag, genes, features_sorted, kw)
    rows, reps = [], {}
    for pair in pairs:
        regs = pair_regulators(pair, GENE_SET, truths[pair], names, prep.organism)[0]
        t = truths[pair].to_matrix(regs, names)
        valid = regs[:, None] != names[None, :]
        mask = np.isin(names, regs)
        scores = {m: net[mask] for m, net in nets.items()}
        boot = toolkit.bootstrap(protocol.ratio_statistics(scores, t, valid), len(regs), args.n_boot, args.seed)
        args.hashes["truths"][f"{name}×{pair.truth}"] = truth_hash(truths[pair])
        summary = protocol.summarise(boot, (DEFAULT, REFERENCE))
        for m, r in summary.items():
            rows.append({"dataset": name, "truth": pair.truth, "split": pair.split, "cells": size, "seed": seed,
                         "tfs_plus": GENE_SET, "genes": len(genes), "regulators": int(len(regs)),
                         "true_edges": int(t[valid].sum()), "method": m, "seconds": float(seconds[m]), **r})
            reps[(name, pair.truth, size, seed, m)] = boot.replicates[m][:, 0]
        print(f"  {tag} {pair.truth}: {len(regs)} regulators; "
              + ", ".join(f"{m} {r['ratio']:.2f}" for m, r in summary.items()), flush=True)
    return rows, reps


# ------------------------------------------------------------------------------------------------ the rule


def size_figures(rows: list[dict], size: int, datasets: set[str] | None = None) -> list[dict]:
    """The protocol's dataset × truth figures at one cell count: each the mean over seeds (`pair_figures` averages
    a figure's rows), floor applied."""
    at = [r for r in rows if r["cells"] == size and (datasets is None or r["dataset"] in datasets)]
    return protocol.pair_figures(at, protocol.DEVELOPMENT)


def size_costs(rows: list[dict], size: int) -> tuple[dict[str, float], float]:
    """Each method's seconds at one cell count (median over datasets of the seed mean; one network per subsample,
    so its pairs share it) and GENIE3's scaled to the protocol's trees."""
    by: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r["cells"] == size:
            by.setdefault(r["method"], {}).setdefault(r["dataset"], []).append(r["seconds"])
    cost = {m: float(np.median([np.mean(v) for v in d.values()])) for m, d in by.items()}
    return cost, cost[REFERENCE] * PROTOCOL_TREES / TREES


def winners(rows: list[dict], sizes: list[int], datasets: set[str] | None = None) -> dict[int, str]:
    """The protocol's rule at each cell count: the best robust score among grn methods fast enough, or a cheaper
    one within TIE (GENIE3 is the reference, not a candidate)."""
    out = {}
    for size in sizes:
        robust = protocol.robust_scores(size_figures(rows, size, datasets))
        cost, genie3 = size_costs(rows, size)
        out[size] = protocol.choose_default({m: v for m, v in robust.items() if m != REFERENCE}, cost, genie3)
    return out


def few_cells_rule(rows: list[dict]) -> dict:
    """Whether the winner changes with the cell count, and the rule that follows: one method at every size, or one
    switch (a method below a threshold, another from it on). Winners that change more than once give no rule."""
    sizes = sorted({r["cells"] for r in rows})
    won = winners(rows, sizes)
    order = [won[s] for s in sizes]
    switches = [i for i in range(1, len(order)) if order[i] != order[i - 1]]
    if not switches:
        change = "no change" if order[0] == DEFAULT else f"no cell-count rule ({order[0]} at every size)"
        text = f"{change}: {order[0]} wins at every size ({sizes[0]}–{sizes[-1]} cells)"
        rule = {"threshold": None, "below": order[0], "from": order[0]}
    elif len(switches) == 1:
        cut = sizes[switches[0]]
        text = f"below {cut} cells use {order[0]}; from {cut} cells, {order[-1]}"
        rule = {"threshold": cut, "below": order[0], "from": order[-1]}
    else:
        text = "no rule: the winner changes more than once with the cell count (" + ", ".join(
            f"{s}: {won[s]}" for s in sizes) + f"); {DEFAULT} stays"
        rule = {"threshold": None, "below": DEFAULT, "from": DEFAULT}
    every = set.intersection(*({r["dataset"] for r in rows if r["cells"] == s} for s in sizes))
    return {"winners": {str(s): won[s] for s in sizes}, "rule": rule, "rule_text": text,
            "common_datasets": sorted(every), "common_winners": {str(s): m for s, m in
                                                                 winners(rows, sizes, every).items()}}


def size_table(rows: list[dict], reps: dict) -> dict[str, dict]:
    """Per cell count and method: the aggregate (median of figures above the floor), its robust score, its
    bootstrap interval and its paired difference from Spearman (each replicate: median over figures of the
    seed-mean ratio), the figures, and the cost."""
    out = {}
    for size in sorted({r["cells"] for r in rows}):
        figs = size_figures(rows, size)
        kept = [(f["dataset"], f["truth"]) for f in figs if not f["below_floor"] and f["method"] == DEFAULT]
        agg, robust = protocol.aggregate(figs), protocol.robust_scores(figs)
        cost, genie3 = size_costs(rows, size)

        def replicate(m: str) -> np.ndarray:  # [n_boot] median over kept figures of the mean over seeds
            per = [np.nanmean([v for (d2, t2, s, _, m2), v in reps.items() if (d2, t2, s, m2) == (d, t, size, m)],
                              axis=0) for d, t in kept]
            return np.median(per, axis=0)

        methods = {}
        for m in agg:
            rep = replicate(m)
            diff = rep - replicate(DEFAULT)
            methods[m] = {"aggregate": agg[m], "ci": toolkit.percentile_interval(rep), "robust": robust[m],
                          "minus_spearman": agg[m] - agg[DEFAULT], "minus_spearman_ci": toolkit.percentile_interval(
                              diff), "seconds": cost[m]}
        out[str(size)] = {"figures": len(kept), "datasets": sorted({d for d, _ in kept}), "methods": methods,
                          "genie3_cost_at_protocol_trees": genie3}
    return out


def markdown(record: dict) -> str:
    """The per-size table of a record (aggregate [95%], minus Spearman [95%], seconds), and its rule."""
    methods = list(next(iter(record["per_size"].values()))["methods"])
    lines = ["| cells | figures (datasets) | " + " | ".join(methods) + " | winner |",
             "|---|---|" + "---|" * len(methods) + "---|"]
    for size, block in record["per_size"].items():
        cells = []
        for m in methods:
            r = block["methods"][m]
            lo, hi = r["ci"]
            dlo, dhi = r["minus_spearman_ci"]
            cells.append(f"{r['aggregate']:.2f} [{lo:.2f}, {hi:.2f}]" + (
                "" if m == DEFAULT else f"<br>{r['minus_spearman']:+.2f} [{dlo:+.2f}, {dhi:+.2f}]"))
        lines.append(f"| {size} | {block['figures']} ({', '.join(block['datasets'])}) | " + " | ".join(cells)
                     + f" | {record['winners'][size]} |")
    return "\n".join(lines) + f"\n\nRule: {record['rule_text']}"


def write(args, rows: list[dict], reps: dict, datasets: list[str], wall: float, argv: list[str] | None) -> None:
    """The record (`toolkit.write_record`: provenance, checkpoint digest), the rule and the per-size table."""
    body = {"network_protocol": protocol.VERSION, "regulator_floor": protocol.REGULATOR_FLOOR, "tie": protocol.TIE,
            "speed": protocol.SPEED, "precision": args.precision,
            "settings": {"sizes": args.sizes, "seeds": args.seeds, "tfs_plus": GENE_SET, "trees": args.trees,
                         "protocol_trees": PROTOCOL_TREES, "n_boot": args.n_boot, "metacell_k": list(K_VALUES),
                         "datasets": datasets},
            **few_cells_rule(rows), "per_size": size_table(rows, reps), "hashes": args.hashes, "wall_s": wall,
            "rows": rows}
    methods = {m: method_version(m) for m in (REFERENCE, "boosted")}
    methods.update({m: f"grn method {m}" for m in GRN_METHODS})
    methods.update({metacell_name(k): f"networks.metacells.pooled_expression(k={k}) + |Spearman|" for k in K_VALUES})
    toolkit.write_record(args.out, body, method=methods, checkpoint=args.checkpoint, digest=args.digest,
                         command=toolkit.command_line(argv), indent=None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--datasets", nargs="*", help="only these development datasets (default: every one)")
    ap.add_argument("--checkpoint", default="shipped")
    ap.add_argument("--trees", type=int, default=TREES)
    ap.add_argument("--n-boot", type=int, default=N_BOOT)
    ap.add_argument("--seed", type=int, default=toolkit.SEED, help="the bootstrap's resamples")
    ap.add_argument("--out", default=str(toolkit.results_path("few_cells")))
    ap.add_argument("--table", metavar="JSON", help="print the markdown table of a finished run and stop")
    args = ap.parse_args(argv)
    if args.table:
        print(markdown(json.loads(Path(args.table).read_text())))
        return
    bundle = load_model(args)
    args.code["metacells"] = code_version(("grnformer.networks.metacells",))
    args.hashes["subsamples"] = {}
    datasets = [d for d in dict.fromkeys(p.dataset for p in protocol.pairs(protocol.DEVELOPMENT))
                if not args.datasets or d in args.datasets]
    datasets.sort(key=lambda d: d == "beeline_hhep")  # the costliest (448 TFs) last: a partial record holds the rest
    rows, reps, t0 = [], {}, time.perf_counter()
    for name in datasets:
        adata, genes = dataset_genes(bundle, name)
        args.hashes["data"][name] = data_hash(adata)
        args.hashes["genes"][name] = protocol.content_hash(np.asarray(genes, dtype=object))
        print(f"{name}: {adata.n_obs} cells, {len(genes)} genes (TFs + {GENE_SET})", flush=True)
        for size in [s for s in args.sizes if s <= adata.n_obs]:
            for seed in args.seeds:
                got, boot = run_subsample(bundle, name, adata, genes, size, seed, args)
                rows += got
                reps.update(boot)
        write(args, rows, reps, datasets, time.perf_counter() - t0, argv)  # a partial record survives a stop
        print(f"  done {name} at {time.perf_counter() - t0:.0f} s", flush=True)
    print(markdown(json.loads(Path(args.out).read_text())), flush=True)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
