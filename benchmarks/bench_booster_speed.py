"""The booster's speed against GENIE3 as users run it (issue 28 §2): one process, one thread, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_booster_speed.py [--datasets beeline_mhsc_l] \
        [--size 1000] [--out benchmarks/results/booster_speed.json]

The protocol's GENIE3 (50 trees of at most 500 cells) is a cheapened GENIE3 that keeps the protocol affordable;
its time is what the protocol's speed rule compares (RESULTS.md, protocol v2: booster 3.7× at mHSC-L TFs+1000).
The issue's goal reads "≥ 10× GENIE3's speed at TFs+1000 with ≥ 800 cells", and GENIE3 as published and as
`grnformer bench --methods genie3` runs it is 100 trees on every cell. This script times, on the same genes and
regulators (BEELINE's TFs+N and its TF list), each of: the booster (`grn --method boosted`), GENIE3 at its
defaults, the protocol's GENIE3 and GRNBoost2 at its defaults (scikit-learn gradient boosting, 500 trees, early
stopping), and Spearman (grn's default), and writes each one's seconds and its ratio to the booster's.
mHSC-L is the only development set with ≥ 800 cells and a TF list. Quality is not measured here: the protocol
record holds the booster's paired differences from the protocol's GENIE3.
"""

from __future__ import annotations

import argparse
import time

from bench_protocol import load_data

from grnformer.bench import protocol, toolkit
from grnformer.bench.baselines import infer, method_version

RUNS = {  # name: (baseline method, its options)
    "boosted": ("boosted", {}),
    "genie3_default": ("genie3", {}),
    "genie3_protocol": ("genie3", {"n_estimators": 50, "max_samples": 500}),
    "grnboost2_default": ("grnboost2", {}),
    "spearman": ("spearman", {}),
}
REFERENCE = "boosted"


def time_dataset(name: str, size: int, runs: list[str]) -> dict:
    """Seconds of each run on one BEELINE set at TFs+``size`` (same genes and regulators for all)."""
    adata, _ = load_data(name, size)
    genes = adata.var_names.tolist()
    tfs = sorted(protocol.beeline_tfs(name, size) & set(genes))
    print(f"{name}: {adata.n_obs} cells, {len(genes)} genes, {len(tfs)} TFs", flush=True)
    seconds = {}
    for run in runs:
        method, kw = RUNS[run]
        t0 = time.perf_counter()
        net = infer(method, adata, genes=genes, regulators=tfs, **kw)
        seconds[run] = time.perf_counter() - t0
        assert net.n_vars == len(genes)
        print(f"  {run}: {seconds[run]:.1f} s", flush=True)
    return {"dataset": name, "tfs_plus": size, "cells": int(adata.n_obs), "genes": len(genes), "tfs": len(tfs),
            "seconds": seconds,
            "times_booster": {r: seconds[r] / seconds[REFERENCE] for r in seconds if REFERENCE in seconds}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["beeline_mhsc_l"], choices=sorted(protocol.BEELINE_SETS))
    ap.add_argument("--size", type=int, default=1000, choices=protocol.GENE_SET_SIZES)
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--out", default="benchmarks/results/booster_speed.json")
    args = ap.parse_args(argv)
    rows = [time_dataset(name, args.size, args.runs) for name in args.datasets]
    for r in rows:
        print(r["dataset"], {k: round(v, 2) for k, v in r["times_booster"].items()}, flush=True)
    methods = {m: method_version(m) for m in dict.fromkeys(RUNS[r][0] for r in args.runs)}
    body = {"runs": {r: {"method": RUNS[r][0], "options": RUNS[r][1]} for r in args.runs}, "reference": REFERENCE,
            "threads": "one (OMP_NUM_THREADS=1, n_jobs=1)", "rows": rows}
    toolkit.write_record(args.out, body, method=methods, command=toolkit.command_line(argv))
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
