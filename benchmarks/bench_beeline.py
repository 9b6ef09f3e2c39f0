"""BEELINE-format directories built from real data, benched end to end, with bootstrap intervals (~3 min on 2 cores).

    .venv/bin/python benchmarks/bench_beeline.py [OUT] [--record benchmarks/results/beeline.json]
                                                  # OUT: working directory, default benchmarks/out/beeline

Writes two BEELINE directories from the McCalla counts and gold standards (`scripts/beeline_dirs.py`: 20 of the
best-expressed reference regulators, their best-expressed targets up to 300 genes, 200 cells, log2(x+1) values;
mESC upper-cased as BEELINE writes mouse genes), runs `grnformer bench` on them (pearson, spearman, genie3, grnformer
with the shipped checkpoint) and adds 95% bootstrap intervals of AUPRC ratio and EPR over the reference regulators
(1,000 resamples of the TF rows, the networks fixed; `bench.toolkit`), written as the record
benchmarks/results/beeline.json.
"""

import argparse
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from grnformer.bench import beeline, toolkit
from grnformer.bench.network_scores import score_network
from grnformer.bench.runner import bench_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from beeline_dirs import write_sets  # noqa: E402

METHODS = ["pearson", "spearman", "genie3", "grnformer"]
N_BOOT = 1000


def bootstrap(net: ad.AnnData, adata: ad.AnnData, n_boot: int = N_BOOT) -> dict[str, list[float | None]]:
    """95% intervals of AUPRC ratio and EPR over the reference regulators (rows, `bench.toolkit.bootstrap`;
    scored with BEELINE's convention, `score_network` on the directory's genes), the network fixed."""
    truth = beeline.reference(adata)
    genes = beeline.genes(adata)
    regs = [g for g in genes if g in set(truth.regulators)]
    grn = net.varp["GRN"]
    grn = grn.toarray() if hasattr(grn, "toarray") else np.asarray(grn)
    names = net.var["symbol"].astype(str).to_numpy() if "symbol" in net.var else net.var_names.to_numpy()
    full = pd.DataFrame(grn, index=names, columns=names)
    full = full.loc[~full.index.duplicated(), ~full.columns.duplicated()]
    pred = full.reindex(index=regs, columns=genes).to_numpy(dtype=np.float64)
    labels = truth.to_matrix(regs, genes)

    def stat(idx: np.ndarray) -> tuple[float, float]:
        r = score_network(pred[idx], labels[idx], regulators=[regs[i] for i in idx], targets=genes)
        return r["auprc"] / r["random_precision"], r["epr"]

    boot = toolkit.bootstrap({"net": stat}, len(regs), n_boot)
    return {"auprc_ratio": boot.interval("net", 0), "epr": boot.interval("net", 1)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", type=Path, default=Path("benchmarks/out/beeline"),
                    help="working directory: the BEELINE directories and the bench's networks")
    ap.add_argument("--record", default=str(toolkit.results_path("beeline")), help="the result record")
    args = ap.parse_args(argv)
    out = args.out
    dirs = write_sets(out / "dirs")
    specs = [f"beeline:{dirs['hESC']}:human", f"beeline:{dirs['mESC']}:mouse"]
    results = bench_main(METHODS, specs, [], out / "bench", checkpoint="shipped", progress=False)
    data = {a.uns["beeline"]["name"]: a for a in (beeline.load(s) for s in specs)}
    rows = []
    for rec in results["records"]:
        timing = next(t for t in results["timings"] if t["method"] == rec["method"] and t["dataset"] == rec["dataset"])
        ci = bootstrap(ad.read_h5ad(out / "bench" / timing["network"]), data[rec["dataset"]])
        rows.append({"dataset": rec["dataset"], "method": rec["method"], "n_regulators": rec["n_regulators"],
                     "n_true": rec["n_true"], "n_candidates": rec["n_candidates"],
                     "auprc_ratio": rec["auprc_ratio"], "auprc_ratio_ci": ci["auprc_ratio"],
                     "epr": rec["epr"], "epr_ci": ci["epr"], "auroc": rec["auroc"], "seconds": timing["seconds"]})
        r = rows[-1]
        print(f"| {r['dataset']} | {r['method']} | {r['auprc_ratio']:.3f} [{ci['auprc_ratio'][0]:.3f}, "
              f"{ci['auprc_ratio'][1]:.3f}] | {r['epr']:.3f} [{ci['epr'][0]:.3f}, {ci['epr'][1]:.3f}] | "
              f"{r['auroc']:.3f} | {r['seconds']:.1f} |", flush=True)
    toolkit.write_record(args.record, {"rows": rows, "n_boot": N_BOOT}, checkpoint="shipped",
                         method={"methods": METHODS, "versions": results["methods"]},
                         command=toolkit.command_line(argv))


if __name__ == "__main__":
    main()
