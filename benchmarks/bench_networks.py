"""Every grnformer network method beside the baselines on the same cells, genes and truths (issue 12.7).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_networks.py [--cells 120] [--genes 150] \
        [--json benchmarks/results/networks.json] [--figure benchmarks/figures/network_stability.png]

Datasets / truths: PBMC3k vs Omnipath and ENCODE ChIP (rows = TFs among the genes); Chen hESC vs McCalla hESC
knock-down and ChIP∩knock-down, Semrau mESC vs the mESC ones (rows = the truth's regulators among the genes,
McCalla's convention). Per dataset: ``--cells`` random cells, ``--genes`` genes (a third regulators: the most
variable TFs for PBMC3k, the McCalla truths' measured regulators for the ESC sets; then the most variable genes),
all in one context of the shipped model (256).
Methods (shipped model, one CPU thread):
  raw            mean q·k attention, no correction (kq) — the network before this issue
  centre_q       the same with the mean query removed (the new default correction)
  centre_q, qk   rows = queries
  perturb        in-silico knock-out of a third of the genes (TFs first; signed effects, scored by |effect|)
  adapted        centre_q after a short self-supervised adaptation to the dataset's cells (``--adapt-steps``)
  heads(PBMC)    centre_q with heads selected on PBMC3k/Omnipath (regulator split), applied unchanged everywhere
                 (on PBMC3k/Omnipath itself the number is in-sample for the fitted half: marked)
  GENIE3 (``--trees`` trees), Pearson, Spearman (bench.baselines), regulators = every gene, as grnformer
Scores: AUPRC / random precision and EPR (`grnformer.edge_metrics`), with 95% intervals from 200 bootstrap resamples of
the scored regulators (rows, `bench.toolkit`'s resamples); wall time per method. Stability: centre_q with 20
bootstrap replicates of the cells on PBMC3k; precision of Omnipath edges by stability bin (the figure).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from grnformer.bench import protocol, toolkit
from grnformer.bench.baselines import infer, select_genes
from grnformer.bench.network_scores import score_network
from grnformer.bench.truths import load_truth
from grnformer.data.corpus import datasets
from grnformer.data.genes import tf_symbols
from grnformer.data.input.prepare import prepare
from grnformer.inference.device import load_task_bundle
from grnformer.networks.grn import GRNOptions, grn
from grnformer.networks.heads import select_heads_from_network

SETS = {"pbmc3k": (["omnipath", "encode_chip"], "tf"),
        "chen_hesc": (["mccalla_hesc_kd", "mccalla_hesc_chip_kd"], "truth_regulators"),
        "semrau_mesc": (["mccalla_mesc_kd", "mccalla_mesc_chip_kd"], "truth_regulators")}


def _rows(net, truth, universe: str, organism: str) -> np.ndarray:
    names = np.asarray(net.var_names)
    allowed = tf_symbols(organism) if universe == "tf" else set(truth.regulators)
    return np.flatnonzero(np.isin(names, list(allowed)))


def score(net, truth, universe: str, organism: str, n_boot: int = toolkit.N_BOOT) -> dict:
    """score_network's numbers plus the protocol's row-bootstrap 95% interval of AUPRC / random and of EPR
    (`bench.protocol.bootstrap` on `bench.toolkit`'s resamples)."""
    m = score_network(net, truth, universe=universe, organism=organism)
    names = np.asarray(net.var_names)
    rows = _rows(net, truth, universe, organism)
    grn_m = net.varp["GRN"]
    s = np.asarray(grn_m.toarray() if hasattr(grn_m, "toarray") else grn_m, dtype=np.float64)[rows]
    t = truth.to_matrix(names[rows], names)
    valid = names[rows][:, None] != names[None, :]
    ci = protocol.bootstrap({"net": s}, t, valid, n_boot=n_boot)["net"]
    return {"ratio": m["auprc"] / m["random_precision"], "ratio_ci": ci["ratio_ci"], "epr": m["epr"],
            "epr_ci": ci["epr_ci"], "auroc": m["auroc"], "n_true": m["n_true"], "n_regulators": m["n_regulators"],
            "n_candidates": m["n_candidates"]}


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def networks(bundle, adata, genes: list[str], heads, args) -> dict:
    """name -> (network AnnData, seconds)."""
    base = dict(genes=genes, n_genes=None, batch_size=32)
    out = {}
    out["raw"] = _timed(lambda: grn(bundle, adata, GRNOptions(**base, correction="none"), progress=False))
    out["centre_q"] = _timed(lambda: grn(bundle, adata, GRNOptions(**base), progress=False))
    out["centre_q, qk"] = _timed(lambda: grn(bundle, adata, GRNOptions(**base, direction="qk"), progress=False))
    out["perturb"] = _timed(lambda: grn(bundle, adata, GRNOptions(**base, method="perturb",
                                                                 max_regulators=len(genes) // 3),
                                        progress=False))
    if args.adapt_steps:
        out["adapted"] = _timed(lambda: grn(bundle, adata, GRNOptions(**base, adapt_steps=args.adapt_steps),
                                            progress=False))
    if heads is not None:
        out["heads(PBMC)"] = _timed(lambda: grn(bundle, adata, GRNOptions(**base, heads=heads), progress=False))
    for method, kw in (("GENIE3", {"n_estimators": args.trees}), ("Pearson", {}), ("Spearman", {})):
        out[method] = _timed(lambda: infer(method.lower(), adata, genes=genes, **kw))
    return out


def load_network_set(name: str, truths: list[str], bundle, n_cells: int, n_genes: int):
    """Cells, genes and organism of one set. A third of the genes are regulators: TFs for PBMC3k; for the McCalla
    sets the regulators the truths measured (ChIP∩KD ones first), as BEELINE and McCalla et al. do; then the
    most variable genes. Only genes the model's vocabulary maps are kept."""
    adata = datasets.load(name)
    rows = np.sort(np.random.default_rng(0).choice(adata.n_obs, min(n_cells, adata.n_obs), replace=False))
    adata = adata[rows].copy()
    mapped = set(prepare(adata, vocab=bundle.vocab)[0].var["symbol"].astype(str))
    organism = str(adata.obs["organism_ontology_term_id"].iloc[0])
    ranked = [g for g in select_genes(adata, n_genes=adata.n_vars, n_tfs=0, organism=organism) if g in mapped]
    if name == "pbmc3k":
        pool = tf_symbols(organism)
        regulators = [g for g in ranked if g in pool]
    else:
        pools = [set(load_truth(t).regulators) for t in reversed(truths)]  # chip_kd first
        regulators = [g for pool in pools for g in ranked if g in pool]
    chosen = list(dict.fromkeys(regulators))[: n_genes // 3]
    chosen += [g for g in ranked if g not in set(chosen)][: n_genes - len(chosen)]
    return adata, chosen, organism


def stability_figure(bundle, adata, genes, path: Path) -> dict:
    """Precision of Omnipath edges among TF rows by stability bin (centre_q, 20 replicates), and the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net, seconds = _timed(lambda: grn(bundle, adata, GRNOptions(genes=genes, n_genes=None, n_bootstrap=20, top_k=10),
                                      progress=False))
    names = np.asarray(net.var_names)
    rows = np.flatnonzero(np.isin(names, list(tf_symbols("human"))))
    truth = load_truth("omnipath").to_matrix(names[rows], names)
    stab = net.varp["GRN_stability"][rows]
    valid = names[rows][:, None] != names[None, :]
    bins = [(0.0, 0.0), (0.05, 0.25), (0.3, 0.5), (0.55, 0.75), (0.8, 1.0)]
    table = []
    for lo, hi in bins:
        sel = valid & (stab >= lo - 1e-9) & (stab <= hi + 1e-9)
        table.append({"stability": f"{lo:.2f}-{hi:.2f}", "edges": int(sel.sum()),
                      "precision": float(truth[sel].mean()) if sel.any() else None})
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.bar([b["stability"] for b in table], [b["precision"] or 0 for b in table], color="tab:blue")
    ax.axhline(float(truth[valid].mean()), color="grey", ls="--", label="all TF-row pairs")
    ax.set_xlabel("edge stability (share of 20 bootstrap replicates in the regulator's top 10)")
    ax.set_ylabel("precision (Omnipath)")
    ax.set_title("PBMC3k, centre_q network: stable edges vs Omnipath")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return {"bins": table, "random_precision": float(truth[valid].mean()), "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=120)
    p.add_argument("--genes", type=int, default=150)
    p.add_argument("--adapt-steps", dest="adapt_steps", type=int, default=30)
    p.add_argument("--trees", type=int, default=30)
    p.add_argument("--json", default=str(toolkit.results_path("networks")))
    p.add_argument("--figure", default="benchmarks/figures/network_stability.png")
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    bundle, _ = load_task_bundle("shipped", "cpu")
    results: dict = {"settings": vars(args), "datasets": {}}
    heads = None
    for name, (truths, universe) in SETS.items():
        adata, genes, organism = load_network_set(name, truths, bundle, args.cells, args.genes)
        if heads is None:  # fitted once, on the first set (PBMC3k / Omnipath), then applied unchanged
            cube_net = grn(bundle, adata, GRNOptions(genes=genes, n_genes=None, keep_heads=True), progress=False)
            heads = select_heads_from_network(cube_net, load_truth("omnipath").edges, split="regulators", seed=0)
            results["heads"] = heads.to_dict()
            results["stability"] = stability_figure(bundle, adata, genes, Path(args.figure))
        nets = networks(bundle, adata, genes, heads, args)
        entry = {"cells": int(adata.n_obs), "genes": len(genes), "universe": universe,
                 "seconds": {k: s for k, (_, s) in nets.items()}, "scores": {}}
        for tname in truths:
            truth = load_truth(tname)
            entry["scores"][tname] = {k: score(net, truth, universe, organism) for k, (net, _) in nets.items()}
        entry["perturb"] = {k: nets["perturb"][0].uns["grn"][k] for k in ("forwards", "seconds", "n_regulators")}
        results["datasets"][name] = entry
        ratios = {t: {k: round(v["ratio"], 2) for k, v in s.items()} for t, s in entry["scores"].items()}
        print(name, json.dumps(ratios), flush=True)
    results["seconds_total"] = time.perf_counter() - t0
    toolkit.write_record(args.json, results, checkpoint="shipped",
                         method={"methods": list(next(iter(results["datasets"].values()))["seconds"]),
                                 "cells": args.cells, "genes": args.genes, "trees": args.trees})
    print(markdown(results))


def markdown(results: dict) -> str:
    methods = list(next(iter(results["datasets"].values()))["seconds"])
    lines = ["| dataset | truth (true edges / candidates) | " + " | ".join(methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for d, entry in results["datasets"].items():
        for t, by_method in entry["scores"].items():
            any_m = next(iter(by_method.values()))
            cells = []
            for m in methods:
                s = by_method[m]
                lo, hi = s["ratio_ci"]
                cells.append(f"{s['ratio']:.2f} [{lo:.2f}, {hi:.2f}]" if lo is not None else f"{s['ratio']:.2f}")
            lines.append(f"| {d} | {t} ({any_m['n_true']} / {any_m['n_candidates']:,}) | " + " | ".join(cells) + " |")
        lines.append(f"| {d} | seconds | " + " | ".join(f"{entry['seconds'][m]:.1f}" for m in methods) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
