"""Throughput of the GRNFormer model: forward (embedding) and the full three-task training step.

One command measures, for each preset and context length, cells/s, peak memory, model FLOPs per cell and MFU on
whatever device is present:

    .venv/bin/python benchmarks/bench_model.py                       # CUDA if present, else CPU
    .venv/bin/python benchmarks/bench_model.py --device cpu --threads 2 --presets small --contexts 2200,512

The training step is the one pre-training runs: forward on a down-sampled profile, bottleneck pass, ZINB loss of
both against the original counts, hierarchical loss of every label class, backward, gradient clipping, AdamW.
Inputs are synthetic (random genes of the 41,927-gene default vocabulary, Poisson counts): speed does not depend
on the values. On CUDA: bf16 autocast, each SDPA back-end (flash, cuDNN, memory-efficient) and torch.compile on /
off, at the largest batch that fits (searched) and at the reference batch of issue 3. On CPU: fp32, one batch.
Each measurement runs in its own process so peak memory is its own. Rows print as a markdown table; all fields
go to the record benchmarks/results/model_speed.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from typing import Any, Callable

import torch

from grnformer.bench import toolkit
from grnformer.model import GRNFormer, ModelConfig, hierarchical_label_loss, zinb_nll

VOCAB, N_POSITIONS = 41_927, 36_278  # GeneVocab.default(): protein-coding human + mouse, 10 kb position tokens
# Leaves per label class, of the order of the CELLxGENE census; a quarter as many coarse terms.
LABEL_SIZES = {"cell_type": 600, "disease": 200, "assay": 30, "sex": 3, "self_reported_ethnicity": 30,
               "organism": 2}
REF_BATCH = {"small": 64, "medium": 64, "large": 16}  # issue 3 gives 64 (small) and 16 (large); medium: ours
# Dense bf16 tensor-core peaks (vendor data sheets), matched on the device name in this order.
PEAK_BF16 = [("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
             ("A100", 312e12), ("L40S", 362e12), ("A10G", 70e12)]
BACKENDS = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
            "math": "MATH"}


# ------------------------------------------------------------------------------------------ one measurement

def build(preset: str, context: int, device: torch.device) -> tuple[GRNFormer, dict[str, torch.Tensor]]:
    cfg = ModelConfig.preset(preset, vocab_size=VOCAB, n_positions=N_POSITIONS, context_length=context,
                             label_sizes=LABEL_SIZES)
    g = torch.Generator().manual_seed(0)
    model = GRNFormer(cfg, torch.randint(0, N_POSITIONS, (VOCAB,), generator=g)).to(device)
    desc = {c: (torch.rand(max(1, n // 4), n, generator=g) < 0.1).to(device) for c, n in LABEL_SIZES.items()}
    return model, desc


def make_batch(B: int, L: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    target = torch.poisson(torch.full((B, L), 2.0), generator=g)
    batch = {"genes": torch.randint(0, VOCAB, (B, L), generator=g),
             "target": target,
             "counts": torch.binomial(target, torch.full_like(target, 0.4), generator=g),  # 60 % of counts removed
             "depth": target.sum(1) * 4,
             "labels": torch.stack([torch.randint(-1, n + max(1, n // 4), (B,), generator=g)
                                    for n in LABEL_SIZES.values()], dim=1)}
    return {k: v.to(device) for k, v in batch.items()}


def training_loss(model: GRNFormer, desc: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
    scale = b["target"].sum(1)
    out = model(b["genes"], b["counts"], b["depth"], scale=scale)
    loss = zinb_nll(b["target"], out.mu, out.theta, out.pi_logit).mean()
    loss = loss + zinb_nll(b["target"], *model.bottleneck(out, b["genes"], b["depth"], scale)).mean()
    for i, (name, logits) in enumerate(out.label_logits.items()):
        loss = loss + hierarchical_label_loss(logits, b["labels"][:, i], desc[name])
    return loss


def step_fn(mode: str, compiled: bool, model: GRNFormer, desc, batch) -> Callable[[], None]:
    """A closure running one forward (mode=forward) or one full training step (mode=train)."""
    device = batch["genes"].device
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    if mode == "forward":
        model.eval()
        fwd = torch.compile(model) if compiled else model

        def run() -> None:
            with torch.inference_mode(), amp:
                fwd(batch["genes"], batch["counts"], batch["depth"]).cell_emb.float().sum()
        return run
    model.train()
    loss_fn = torch.compile(training_loss) if compiled else training_loss
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, fused=device.type == "cuda")

    def run() -> None:
        with amp:
            loss = loss_fn(model, desc, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return run


def attention_backend(name: str):
    if name == "auto":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([getattr(SDPBackend, BACKENDS[name])])


def measure(args: dict[str, Any]) -> dict[str, Any]:
    """Time one (preset, context, mode, backend, compile) at a given batch, or at the largest batch that fits."""
    device = torch.device(args["device"])
    if device.type == "cpu":
        torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    model, desc = build(args["preset"], args["context"], device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def attempt(B: int, steps: int, warmup: int, compiled: bool) -> float | None:
        """Median seconds per step at batch B (robust to a neighbour borrowing the CPU), None when out of memory."""
        try:
            with attention_backend(args["backend"]):
                run = step_fn(args["mode"], compiled, model, desc, make_batch(B, args["context"], device))
                for _ in range(warmup):
                    run()
                times = []
                for _ in range(steps):
                    sync()
                    t0 = time.perf_counter()
                    run()
                    sync()
                    times.append(time.perf_counter() - t0)
                return statistics.median(times)
        except torch.OutOfMemoryError:
            pass
        model.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()
        return None

    def largest_batch() -> int:
        """Doubling, then bisection to a multiple of 8, in eager mode (compiling every probe is too slow)."""
        lo, hi = 0, 8
        while hi <= args["max_batch"] and attempt(hi, 1, 1, compiled=False) is not None:
            lo, hi = hi, hi * 2
        if hi <= args["max_batch"]:  # hi ran out of memory
            while hi - lo > 8:
                mid = (lo + hi) // 16 * 8
                lo, hi = (mid, hi) if attempt(mid, 1, 1, compiled=False) is not None else (lo, mid)
        return lo

    try:  # a RuntimeError here is e.g. "No available kernel" for a back-end this device / shape cannot use
        batch = largest_batch() if args["batch"] == "max" else int(args["batch"])
        if batch == 0:
            return {**args, "error": "batch 8 does not fit"}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        step_s = attempt(batch, args["steps"], args["warmup"], args["compile"])
    except RuntimeError as exc:
        return {**args, "error": str(exc).splitlines()[0][:160]}
    if step_s is None:
        return {**args, "batch": batch, "error": "out of memory"}
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:  # whole-process peak resident memory (includes Python and torch themselves)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    cells_s = batch / step_s
    train = args["mode"] == "train"
    flops_cell = model.flops_per_cell(args["context"])
    # FLOPs per cell of the whole step = its MFU at 1 cell/s against a 1 FLOP/s machine
    step_flops_cell = model.estimate_mfu(1.0, 1.0, train=train, context_length=args["context"])
    return {**args, "batch": batch, "step_s": step_s, "cells_per_s": cells_s, "peak_mem_gib": peak,
            "params": model.get_num_params(), "flops_per_cell_forward": flops_cell,
            "flops_per_cell_step": step_flops_cell, "tflops": step_flops_cell * cells_s / 1e12,
            "mfu": model.estimate_mfu(cells_s, args["peak_flops"], train=train, context_length=args["context"])}


# ---------------------------------------------------------------------------------------------- driver

def peak_flops(device: torch.device, threads: int, given: float | None) -> tuple[float, str]:
    """Denominator of MFU: given, or the data-sheet bf16 peak of a known GPU, or on CPU the measured fp32 matmul
    rate of this machine (so CPU MFU reads 'share of what a large sgemm reaches here')."""
    if given:
        return given * 1e12, "given"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, value in PEAK_BF16:
            if key in name:
                return value, f"{name} bf16 dense data sheet"
        raise SystemExit(f"unknown GPU '{name}': pass --peak-tflops (dense bf16 peak of this GPU)")
    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048**3 / best, f"measured fp32 2048^3 matmul, {threads} threads"


def machine(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, {threads} threads, torch {torch.__version__}, load average {load}"


def row(r: dict[str, Any]) -> str:
    head = (f"| {r['preset']} | {r['context']} | {r['mode']} | {r['backend']} | "
            f"{'on' if r['compile'] else 'off'} | {r['batch']} |")
    if "error" in r:
        return head + f" {r['error']} | | | | |"
    return head + (f" {r['cells_per_s']:.1f} | {r['peak_mem_gib']:.2f} | {r['flops_per_cell_step'] / 1e9:.1f} |"
                   f" {r['tflops']:.2f} | {100 * r['mfu']:.1f} % |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--presets", default="small,medium,large")
    p.add_argument("--contexts", default="2200,512")
    p.add_argument("--modes", default="train,forward")
    p.add_argument("--backends", default=None, help="SDPA back-ends: auto,flash,cudnn,efficient,math "
                   "(default: flash,cudnn,efficient on CUDA, auto on CPU)")
    p.add_argument("--compile", default=None, choices=["off", "on", "both"], help="default: both on CUDA, off on CPU")
    p.add_argument("--batch", default=None, help="comma list of 'max' (search) / 'ref' (issue 3's batch) / ints; "
                   "default: max,ref on CUDA, 8 on CPU")
    p.add_argument("--max-batch", type=int, default=4096)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CUDA, 3 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 CUDA, 1 CPU)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads")
    p.add_argument("--peak-tflops", type=float, default=None, help="MFU denominator (TFLOP/s)")
    p.add_argument("--out", default=str(toolkit.results_path("model_speed")))
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one measurement (JSON) and print its result
    a = p.parse_args()
    if a.one:
        print("RESULT " + json.dumps(measure(json.loads(a.one))), flush=True)
        return

    cuda = torch.cuda.is_available() and a.device in ("auto", "cuda")
    device = torch.device("cuda" if cuda else "cpu")
    backends = (a.backends or ("flash,cudnn,efficient" if cuda else "auto")).split(",")
    compiles = {"off": [False], "on": [True], "both": [False, True]}[a.compile or ("both" if cuda else "off")]
    batches = (a.batch or ("max,ref" if cuda else "8")).split(",")
    steps, warmup = a.steps or (20 if cuda else 3), a.warmup or (5 if cuda else 1)
    peak, peak_source = peak_flops(device, a.threads, a.peak_tflops)
    print(f"# {machine(device, a.threads)}; MFU denominator {peak / 1e12:.2f} TFLOP/s ({peak_source})")
    print("| preset | context | mode | SDPA | compile | batch | cells/s | peak GiB | GFLOP/cell | TFLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for preset in a.presets.split(","):
        for context in map(int, a.contexts.split(",")):
            for mode in a.modes.split(","):
                for backend in backends:
                    for comp in compiles:
                        for batch in batches:
                            b = REF_BATCH[preset] if batch == "ref" else (batch if batch == "max" else int(batch))
                            job = {"device": device.type, "preset": preset, "context": context, "mode": mode,
                                   "backend": backend, "compile": comp, "batch": b, "max_batch": a.max_batch,
                                   "steps": steps, "warmup": warmup, "threads": a.threads, "peak_flops": peak}
                            r = run_isolated(job)
                            results.append(r)
                            print(row(r), flush=True)
    print(f"# load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    toolkit.write_record(a.out, {"peak_flops": peak, "peak_source": peak_source, "results": results},
                         method={"presets": a.presets}, machine_name=machine(device, a.threads))


def run_isolated(job: dict[str, Any]) -> dict[str, Any]:
    """One measurement in a fresh interpreter: its own peak memory, no allocator or compile state carried over."""
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(job)], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {**job, "error": f"crashed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"}


if __name__ == "__main__":
    main()
