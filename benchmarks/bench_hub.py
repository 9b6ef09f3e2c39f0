"""Why one gene absorbs attention, and what removing the shared query does (issue 12.1), shipped model.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_hub.py [--cells 300] [--genes 300]

Per dataset (PBMC3k vs Omnipath / ENCODE with TF rows and all rows; Chen hESC and Semrau mESC vs McCalla KD and
ChIP∩KD, truth-regulator rows) one pass keeps each gene's mean q and k per layer and head (`MeanQK`). Diagnosis:
the mean attention each gene receives as a key, its key norm, and the share of the logits' variance across keys
that is the per-key term every query shares, q̄·K̄ⱼ (q̄ = mean query over the genes). Corrections, all from the
same Q̄/K̄: kq (raw, before this issue), qk, centre_q (Q̄ - q̄; the default now), centre_q in qk, column
normalisation (÷ the key's mean attention received), APC of the mean map. Genes: the demo's choice.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from grnformer.bench import toolkit
from grnformer.bench.network_scores import score_network
from grnformer.bench.truths import load_truth
from grnformer.data.corpus import datasets
from grnformer.data.input.prepare import prepare
from grnformer.demo import _network_genes
from grnformer.inference.device import load_task_bundle
from grnformer.inference.loop import run_model
from grnformer.networks.dispatch import new_accumulator
from grnformer.networks.grn_options import GRNOptions
from grnformer.networks.network_adata import network_adata
from grnformer.networks.network_plan import gene_slots, network_collators, plan_networks

SETS = {"pbmc3k": [("omnipath", "tf"), ("omnipath", "all"), ("encode_chip", "tf"), ("encode_chip", "all")],
        "chen_hesc": [("mccalla_hesc_kd", "truth_regulators"), ("mccalla_hesc_chip_kd", "truth_regulators")],
        "semrau_mesc": [("mccalla_mesc_kd", "truth_regulators"), ("mccalla_mesc_chip_kd", "truth_regulators")]}


def mean_qk(bundle, name: str, n_cells: int, n_genes: int):
    """(Q̄, K̄ [L, H, G, d] numpy, the network AnnData shell) over ``n_cells`` random cells of ``name``."""
    adata = datasets.load(name)
    rows = np.sort(np.random.default_rng(0).choice(adata.n_obs, min(n_cells, adata.n_obs), replace=False))
    adata = adata[rows].copy()
    genes = _network_genes(prepare(adata, vocab=bundle.vocab)[0], n_genes)
    opts = GRNOptions(genes=genes, n_genes=None, correction="none").validate(bundle)
    plan = plan_networks(bundle, adata, opts)
    dev = torch.device("cpu")
    slot_of, collators = gene_slots(bundle, plan, dev), network_collators(bundle, plan, opts)
    acc = new_accumulator(bundle, len(plan.cols), opts, dev)
    for _, _, batch, out in run_model(bundle, plan.prep, plan.groups["all"], collators, dev, batch_size=16,
                                      return_qk=True, progress=False):
        acc.add(slot_of[batch["genes"]], out.qk, same_context=True)
    n = acc.n_cells.numpy()[None, None, :, None]
    shell = network_adata(np.zeros((len(plan.cols),) * 2, np.float32), plan.prep, plan.cols,
                          plan.groups["all"], acc.n_cells.numpy(), {})
    return acc.q_sum.numpy() / n, acc.k_sum.numpy() / n, shell


def softmax_maps(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1])
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    return s / s.sum(axis=-1, keepdims=True)       # [L, H, G(query), G(key)]


def variants(q: np.ndarray, k: np.ndarray) -> dict[str, np.ndarray]:
    raw, cen = softmax_maps(q, k), softmax_maps(q - q.mean(axis=2, keepdims=True), k)
    kq, kq_c = raw.transpose(0, 1, 3, 2), cen.transpose(0, 1, 3, 2)
    mean_kq = kq.mean((0, 1))
    return {"kq (raw)": mean_kq, "qk (raw)": raw.mean((0, 1)), "centre_q (kq)": kq_c.mean((0, 1)),
            "centre_q, qk": cen.mean((0, 1)),
            "column-normalised (kq)": (kq / kq.mean(axis=3, keepdims=True)).mean((0, 1)),
            "APC (kq)": mean_kq - mean_kq.mean(1, keepdims=True) * mean_kq.mean(0, keepdims=True) / mean_kq.mean()}


def diagnose(q: np.ndarray, k: np.ndarray, names: np.ndarray) -> dict:
    maps = softmax_maps(q, k)
    received = maps.mean(axis=(0, 1, 2))
    hub = int(received.argmax())
    key_norm = np.linalg.norm(k, axis=-1).mean((0, 1))
    logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1])
    shared = q.mean(axis=2, keepdims=True) @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1])
    centred = softmax_maps(q - q.mean(axis=2, keepdims=True), k).mean(axis=(0, 1, 2))
    return {"hub": str(names[hub]), "hub_received": float(received[hub]), "uniform": 1 / len(names),
            "median_received": float(np.median(received)),
            "hub_key_norm_rank": int((key_norm > key_norm[hub]).sum()) + 1, "n_genes": len(names),
            "shared_key_term_variance_share": float(np.broadcast_to(shared, logits.shape).var(axis=3).mean()
                                                    / logits.var(axis=3).mean()),
            "max_received_after_centring": float(centred.max()), "hub_received_after_centring": float(centred[hub])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=300)
    p.add_argument("--genes", type=int, default=300)
    p.add_argument("--json", default=str(toolkit.results_path("hub")))
    args = p.parse_args()
    torch.set_num_threads(1)
    bundle, _ = load_task_bundle("shipped", "cpu")
    out = {}
    for name, truths in SETS.items():
        q, k, shell = mean_qk(bundle, name, args.cells, args.genes)
        names = np.asarray(shell.var_names)
        entry = {"diagnosis": diagnose(q, k, names), "scores": {}}
        for label, net in variants(q, k).items():
            off = net - np.diag(np.diag(net))
            rows = off.sum(axis=1)
            scored = shell.copy()
            scored.varp["GRN"] = net.astype(np.float32)
            entry["scores"][label] = {"row_sum_max_over_median": float(rows.max() / np.median(rows)),
                                      "top_row": str(names[rows.argmax()])}
            for truth, universe in truths:
                m = score_network(scored, load_truth(truth), universe=universe)
                entry["scores"][label][f"{truth}/{universe}"] = round(m["auprc"] / m["random_precision"], 2)
        out[name] = entry
        print(name, json.dumps(entry, indent=1), flush=True)
    toolkit.write_record(args.json, out, method={"cells": args.cells, "genes": args.genes}, checkpoint="shipped")


if __name__ == "__main__":
    main()
