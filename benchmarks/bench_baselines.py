"""Every baseline on the real benchmark pairs, with wall time on this machine (one command).

    .venv/bin/python benchmarks/bench_baselines.py            # < 20 min on 2 cores (see RESULTS.md)

- Chen hESC vs McCalla hESC ChIP∩knock-down; Semrau mESC vs McCalla mESC ChIP∩knock-down;
- PBMC3k and retina vs Omnipath (all interactions), Omnipath transcriptional, ENCODE ChIP;
each in the universes all / tf / truth_regulators. Gene set per dataset: the 500 most variable TFs ∪ the most
variable genes, 1,000 in all (detected in ≥ 1% of cells); every gene may be a regulator.
Settings chosen so that the whole run fits 20 minutes on 2 shared cores:
GENIE3 30 random-forest trees per target, each on a bootstrap of ≤ 400 cells; GRNBoost2-style ≤ 100 stages,
learning rate 0.1, early stopping after 5 stages without validation gain; RegDiffusion on CPU for 20 (ESC sets,
~385 cells) or 8 (PBMC3k, retina) of its default 1,000 training steps — hours on 2 cores otherwise — so its
numbers here say nothing about the method.
Outputs: benchmarks/out/baselines/<group>/ (metrics.json, results.md, PR curves, report.html, cached networks) and
the record benchmarks/results/baselines.json (`bench.toolkit.write_record`: scores, timings and settings).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from grnformer.atomic import write_text
from grnformer.bench import toolkit
from grnformer.bench.bench_options import BenchOptions
from grnformer.bench.runner import run_bench

GROUPS = {
    "mccalla": (["chen_hesc", "semrau_mesc"], ["mccalla_hesc_chip_kd", "mccalla_mesc_chip_kd"]),
    "pbmc_retina": (["pbmc3k", "retina"], ["omnipath", "omnipath_tf", "encode_chip"]),
}
METHODS = ["pearson", "spearman", "grnboost2", "genie3", "regdiffusion"]


def summarise(out: Path) -> str:
    """Compact markdown: one row per dataset × truth × universe, AUPRC ÷ random and EPR per method, and times."""
    lines = ["| dataset | truth | universe | true edges / candidates | " + " | ".join(METHODS) + " |",
             "|---|---|---|---|" + "---|" * len(METHODS)]
    times: dict[tuple[str, str], float] = {}
    for group in GROUPS:
        path = out / group / "metrics.json"
        if not path.exists():
            continue
        res = json.loads(path.read_text())
        for t in res["timings"]:
            times[(t["dataset"], t["method"])] = t["seconds"]
        rows: dict[tuple[str, str, str], dict] = {}
        for r in res["records"]:
            rows.setdefault((r["dataset"], r["truth"], r["universe"]), {})[r["method"]] = r
        for (d, t, u), by_method in rows.items():
            any_r = next(iter(by_method.values()))
            cells = []
            for m in METHODS:
                r = by_method.get(m)
                if r is None or isinstance(r["auprc"], str):
                    cells.append("–")
                else:
                    cells.append(f"{r['auprc'] / r['random_precision']:.2f} / {r['epr']:.2f}")
            lines.append(f"| {d} | {t} | {u} | {any_r['n_true']:,} / {any_r['n_candidates']:,} | "
                         + " | ".join(cells) + " |")
    lines += ["", "| dataset | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for d in dict.fromkeys(d for d, _ in times):
        lines.append(f"| {d} | " + " | ".join(f"{times.get((d, m), float('nan')):.1f}" for m in METHODS) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).parent / "out" / "baselines"))
    p.add_argument("--n-genes", type=int, default=1000)
    p.add_argument("--n-tfs", type=int, default=500)
    p.add_argument("--genie3-trees", type=int, default=30)
    p.add_argument("--genie3-max-cells", type=int, default=400)
    p.add_argument("--regdiffusion-steps", type=int, nargs=2, default=[20, 8], metavar=("ESC", "PBMC_RETINA"))
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    p.add_argument("--record", default=str(toolkit.results_path("baselines")),
                   help="the result record (scores, timings, settings)")
    args = p.parse_args()

    options = {"genie3": {"n_estimators": args.genie3_trees, "max_samples": args.genie3_max_cells},
               "grnboost2": {"n_estimators": 100, "learning_rate": 0.1, "n_iter_no_change": 5}}
    steps = dict(zip(GROUPS, args.regdiffusion_steps))
    start = time.perf_counter()
    # the output directory as the command named it relative to where it ran (a record names no machine's paths)
    settings = {**vars(args), "out": os.path.relpath(args.out)}
    summary = {"load_average_at_start": os.getloadavg(), "settings": settings, "groups": {}}
    for group in args.groups:
        datasets, truths = GROUPS[group]
        res = run_bench(METHODS, datasets, truths, Path(args.out) / group, BenchOptions(
            n_genes=args.n_genes, n_tfs=args.n_tfs, universes=["all", "tf", "truth_regulators"], n_jobs=args.n_jobs,
            method_options={**options, "regdiffusion": {"n_steps": steps[group]}}))
        summary["groups"][group] = {"timings": res["timings"], "datasets": res["datasets"],
                                    "records": res["records"]}
        for t in res["timings"]:
            print(f"{group:12s} {t['dataset']:12s} {t['method']:13s} {t['seconds']:8.1f} s"
                  f"{' (cached)' if t['cached'] else ''}")
    summary["total_seconds"] = time.perf_counter() - start
    summary["load_average_at_end"] = os.getloadavg()
    path = toolkit.write_record(args.record, summary, method={"methods": METHODS, "options": options,
                                                              "regdiffusion_steps": steps})
    table = summarise(Path(args.out))
    write_text(Path(args.out).parent / "bench_baselines.md", table)
    print(table)
    print(f"total {summary['total_seconds']:.0f} s; {path}")


if __name__ == "__main__":
    main()
