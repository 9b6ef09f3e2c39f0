"""Zero-shot tasks against the CPU's own matrix-multiply rate, and where their time goes (issue 21, part 3).

    .venv/bin/python benchmarks/bench_zero_shot_speed.py [--checkpoint shipped] [--cells 2700] [--repeats 3]

On PBMC3k (raw counts), in one process and one run, each of: embed (no UMAP), the UMAP of those embeddings,
classify, denoise (its default: each cell's expressed genes), grn with the default method (Spearman: no forward
pass) and grn with the attention read-out (mean_qk, 'hvg+tfs' 500 genes, TF rows), each at 'auto' precision as a
user's run (bf16 on a CPU with native bf16; the record's task_precision). Each task's figure is its cells/s and its
*GEMM ratio*: the time an fp32 matrix multiply of the same FLOPs takes at the rate this CPU reaches on the model's
own largest matmul shape ([batch·context, d] × [d, 4d]), measured right before the task, over the task's time. An
absolute time says little on a shared machine; the ratio to a GEMM in the same run does (both slow down alike).
FLOPs of a forward pass: the matmuls torch's FlopCounterMode counts (linear layers) plus the attention products
(4·L²·d per layer), per cell, for the model's context length.
Breakdown (seconds, all cells): input preparation (`inference.prepared.prepare_input`), collation (records →
padded contexts), the forward pass alone (fp32 and bf16 autocast), and what each task adds on top of them.
Medians of ``--repeats`` runs; each ratio also against the run's median GEMM rate (one probe can catch a
moment another process held the core). Record: benchmarks/results/zero_shot_speed.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from grnformer.bench.toolkit import results_path, write_record
from grnformer.bundle.checkpoint import load_bundle, resolve_checkpoint
from grnformer.data.corpus import datasets
from grnformer.inference.device import uses_bf16
from grnformer.inference.loop import context_collator
from grnformer.inference.prepared import prepare_input
from grnformer.networks.grn import grn
from grnformer.networks.grn_options import GRNOptions
from grnformer.tasks.classify import classify
from grnformer.tasks.denoise import denoise
from grnformer.tasks.embed import embed, umap_of

OUT = results_path("zero_shot_speed")
BATCH = 32


def timed(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def forward_flops_per_cell(bundle, batch: dict) -> float:
    """Linear-layer FLOPs counted by torch plus the attention products of every layer, per cell."""
    model, cfg = bundle.model.eval(), bundle.config
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(batch["genes"], batch["counts"], batch["depth"], scale=batch["counts"].sum(-1))
    n = batch["genes"].shape[0]
    tokens = batch["genes"].shape[1] + cfg.n_special  # gene tokens + cell, depth and label tokens
    attention = 4 * tokens ** 2 * cfg.d_model * cfg.n_layers
    counted = counter.get_flop_counts()["Global"]  # CPU attention kernels may or may not be counted: count once
    linear = sum(v for k, v in counted.items() if "attention" not in str(k))
    return linear / n + attention


class ContextCounter:
    """Counts the contexts (rows of every batch) the model runs, in units of the model's context length (a context
    twice as long counts twice: the linear layers, most of the FLOPs, grow with its tokens)."""

    def __init__(self, model: torch.nn.Module, context_length: int):
        self.n, self.L, forward = 0.0, context_length, model.forward

        def counted(genes, *args, **kwargs):
            self.n += genes.shape[0] * genes.shape[1] / self.L
            return forward(genes, *args, **kwargs)

        model.forward = counted


def gemm_rate(d: int, rows: int, repeats: int) -> float:
    """FLOP/s of [rows, d] × [d, 4d] (the model's MLP shape), fp32, the threads torch uses."""
    x, w = torch.randn(rows, d), torch.randn(4 * d, d)
    with torch.inference_mode():
        torch.nn.functional.linear(x, w)
        t = timed(lambda: torch.nn.functional.linear(x, w), max(repeats, 5))
    return 2 * rows * d * 4 * d / t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="shipped")
    parser.add_argument("--cells", type=int, default=2700, help="PBMC3k cells used (at most 2,700)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the whole run (default: torch's own choice, as a user gets)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.cells < 50 or args.repeats < 1:
        parser.error("--cells must be >= 50 and --repeats >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # held for the whole run: the record says what ran
    bundle = load_bundle(resolve_checkpoint(args.checkpoint), map_location="cpu")
    full = datasets.load("pbmc3k")
    adata = full[: min(args.cells, full.n_obs)].copy()
    n = adata.n_obs
    cfg = bundle.config
    rows = BATCH * cfg.context_length

    prep = prepare_input(bundle, adata.copy())
    collator = context_collator(bundle)
    batches = [collator(prep.records(np.arange(s, min(s + BATCH, n)))) for s in range(0, n, BATCH)]
    flops = forward_flops_per_cell(bundle, batches[0])

    def forward(bf16: bool) -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for b in batches:
                bundle.model(b["genes"], b["counts"], b["depth"], scale=b["counts"].sum(-1))

    parts = {
        "prepare_input": lambda: prepare_input(bundle, adata.copy()),
        "collate": lambda: [collator(prep.records(np.arange(s, min(s + BATCH, n)))) for s in range(0, n, BATCH)],
        "forward_fp32": lambda: forward(False),
        "forward_bf16": lambda: forward(True),
    }
    emb = embed(bundle, adata.copy(), progress=False)
    tasks = {
        "embed": lambda: embed(bundle, adata.copy(), progress=False),
        "umap": lambda: umap_of(emb),
        "classify": lambda: classify(bundle, adata.copy(), progress=False),
        "denoise": lambda: denoise(bundle, adata.copy(), progress=False),
        "grn_default": lambda: grn(bundle, adata.copy(), GRNOptions(), progress=False),
        "grn_mean_qk": lambda: grn(bundle, adata.copy(), GRNOptions(method="mean_qk", n_genes=500),
                                   progress=False),
    }
    # the tasks run at 'auto' precision, as a user's do: bf16 on a CPU with native bf16 (inference.device)
    task_precision = "bf16" if uses_bf16(torch.device("cpu")) else "fp32"
    contexts = ContextCounter(bundle.model, cfg.context_length)
    record: dict = {"parts": {}, "tasks": {}}
    threads = torch.get_num_threads()
    for name, fn in parts.items():
        rate = gemm_rate(cfg.d_model, rows, args.repeats)
        t = timed(fn, args.repeats)
        row = {"seconds": round(t, 2), "cells_per_s": round(n / t, 1), "gemm_gflops": round(rate / 1e9, 1)}
        if name.startswith("forward"):
            row["gemm_ratio"] = round(flops * n / rate / t, 3)
        record["parts"][name] = row
        print(name, row, flush=True)
    for name, fn in tasks.items():
        rate = gemm_rate(cfg.d_model, rows, args.repeats)
        contexts.n = 0
        t = timed(fn, args.repeats)
        forwards = contexts.n / args.repeats / n
        row = {"seconds": round(t, 2), "cells_per_s": round(n / t, 1), "gemm_gflops": round(rate / 1e9, 1),
               "contexts_per_cell": round(forwards, 2)}
        if forwards:  # the FLOPs of the contexts the model ran, at the GEMM rate, over the task's time
            row["gemm_ratio"] = round(forwards * flops * n / rate / t, 3)
            per_context = (record["parts"]["collate"]["seconds"]
                           + record["parts"][f"forward_{task_precision}"]["seconds"])
            row["beyond_prepare_collate_forward_s"] = round(
                t - record["parts"]["prepare_input"]["seconds"] - forwards * per_context, 2)
        record["tasks"][name] = row
        print(name, row, flush=True)
    # one probe can land on a moment another process held the core: the run's median GEMM rate is the steadier
    # reference, and each ratio is also given against it
    median = float(np.median([r["gemm_gflops"] for s in ("parts", "tasks") for r in record[s].values()])) * 1e9
    for s in ("parts", "tasks"):
        for name, r in record[s].items():
            if "gemm_ratio" in r:
                per_cell = r.get("contexts_per_cell", 1.0)
                r["gemm_ratio_run_median"] = round(per_cell * flops * n / median / r["seconds"], 3)
    record.update({"gemm_gflops_run_median": round(median / 1e9, 1), "torch_threads": threads, "cells": n,
                   "task_precision": task_precision,
                   "batch_size": BATCH,
                   "context_length": cfg.context_length, "forward_gflop_per_cell": round(flops / 1e9, 4),
                   "repeats": args.repeats})
    print(f"wrote {write_record(args.out, record, method='zero-shot tasks, defaults', checkpoint=args.checkpoint)}")


if __name__ == "__main__":
    main()
