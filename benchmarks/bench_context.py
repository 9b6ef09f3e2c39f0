"""Attention read-outs beyond the training context, and knock-outs in chunks, on the development pairs only
(issue 18.4): does a model trained at context 256 hold up when one context holds every network gene?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_context.py [--cells 500] \
        [--out benchmarks/results/context.json]

Pairs: the protocol's development pairs (`bench.protocol`), genes TFs + 500 (`hvg+tfs`), at most ``--cells``
random cells (seed 0; per-cell maps and knock-outs cost O(cells × genes²) and O(cells × regulators × chunks)).
Methods, on the same cells, genes and regulator rows:
  mean_qk@256      the default read-out, genes split into contexts of the training length
  mean_qk@all      one context holding every network gene
  per_cell@all     the mean of the true per-cell maps, one context holding every network gene
  perturb@256      in-silico knock-outs of up to 30 regulators (TFs first), contexts of 256 in chunks
  GENIE3, Pearson  the baselines (`bench.baselines`)
Scores: AUPRC ratio with the protocol's row bootstrap and paired differences; wall time per method.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from grnformer.bench import protocol, toolkit
from grnformer.bench.baselines import infer
from grnformer.bench.truths import load_truth
from grnformer.bundle.checkpoint import resolve_checkpoint
from grnformer.data.corpus import datasets
from grnformer.data.genes import tf_symbols
from grnformer.inference.device import load_task_bundle
from grnformer.inference.gene_sets import select_genes
from grnformer.inference.prepared import prepare_input
from grnformer.networks.grn import GRNOptions, grn
from grnformer.networks.network_adata import network_names


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=500)
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--checkpoint", default="shipped")
    ap.add_argument("--out", default="benchmarks/results/context.json")
    args = ap.parse_args(argv)
    path = resolve_checkpoint(args.checkpoint)
    bundle, _ = load_task_bundle(path)
    rows = []
    dev = protocol.pairs(protocol.DEVELOPMENT)
    for name in dict.fromkeys(p.dataset for p in dev):
        adata = datasets.load(name)
        if adata.n_obs > args.cells:
            adata = adata[np.sort(np.random.default_rng(0).choice(adata.n_obs, args.cells, replace=False))].copy()
        prep = prepare_input(bundle, adata)
        genes = network_names(prep, select_genes(prep, "hvg+tfs", args.size)).tolist()
        names = np.asarray(genes)
        whole = len(genes)
        variants = {"mean_qk@256": dict(method="mean_qk"),
                    f"mean_qk@{whole}": dict(method="mean_qk", context_length=whole),
                    f"per_cell@{whole}": dict(method="per_cell", context_length=whole),
                    "perturb@256": dict(method="perturb", max_regulators=30)}
        for pair in [p for p in dev if p.dataset == name]:
            truth = load_truth(pair.truth)
            allowed = tf_symbols(prep.organism) if pair.universe == "tf" else set(truth.regulators)
            regs = names[np.isin(names, list(allowed))]
            scores, seconds = {}, {}
            for label, kw in variants.items():
                t0 = time.perf_counter()
                net = grn(bundle, adata, GRNOptions(genes=genes, regulators=list(regs), **kw), progress=False)
                seconds[label] = time.perf_counter() - t0
                scores[label] = protocol.dense_rows(net, net.var_names.to_numpy(), regs)
                if label == "perturb@256":  # only knocked-out rows carry effects: score those rows
                    knocked = np.abs(scores[label]).sum(axis=1) > 0
            for m, kw in (("genie3", {"n_estimators": 50, "max_samples": 500}), ("pearson", {})):
                t0 = time.perf_counter()
                net = infer(m, prep.adata, genes=genes, regulators=list(regs), **kw)
                seconds[m] = time.perf_counter() - t0
                scores[m] = protocol.dense_rows(net, net.var_names.to_numpy(), regs)
            t = truth.to_matrix(regs, names)
            valid = regs[:, None] != names[None, :]
            res = protocol.bootstrap({k: v for k, v in scores.items() if k != "perturb@256"}, t, valid)
            res["perturb@256 (knocked-out rows)"] = protocol.bootstrap(
                {"perturb@256": scores["perturb@256"][knocked], "genie3": scores["genie3"][knocked],
                 "pearson": scores["pearson"][knocked]}, t[knocked], valid[knocked])["perturb@256"]
            seconds["perturb@256 (knocked-out rows)"] = seconds["perturb@256"]
            for m, r in res.items():
                rows.append({"dataset": name, "truth": pair.truth, "cells": int(adata.n_obs), "genes": whole,
                             "regulators": int(len(regs)), "method": m, "seconds": seconds[m], **r})
                print(f"{pair.name}: {m} {r['ratio']:.2f} {r['ratio_ci']} ({seconds[m]:.0f} s)", flush=True)
    out = toolkit.write_record(args.out, {"settings": {"cells": args.cells, "size": args.size}, "rows": rows},
                               method={m: "registry " + m for m in ("mean_qk", "per_cell", "perturb")},
                               checkpoint=args.checkpoint, digest=protocol.checkpoint_digest(path),
                               command=toolkit.command_line(argv))
    print("wrote", out)


if __name__ == "__main__":
    main()
