"""Which training levers buy cell views per CPU-second: every variant timed side by side in one run.

    .venv/bin/python benchmarks/bench_train_levers.py --threads 1 --rounds 5

Each variant is today's CPU recipe (small preset at context 256, batch 16, fp32, AdamW, dropout 0.1, bottleneck
pass on, 41,927-gene vocabulary) with one thing changed. The rounds interleave the variants, so a neighbour that
borrows the CPU slows all of them alike; the table gives the median seconds per step, cell views per second and
the ratio to the baseline. Inputs are synthetic (speed does not depend on the values); whether a lever also
keeps the loss per cell view is a training question, answered by benchmarks/bench_equal_time.py.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from grnformer.bench import toolkit
from grnformer.model import GRNFormer, ModelConfig, hierarchical_label_loss, zinb_nll

VOCAB, N_POSITIONS = 41_927, 36_278
LABEL_SIZES = {"cell_type": 60, "disease": 4, "assay": 10, "sex": 2, "self_reported_ethnicity": 2, "organism": 2}


@dataclass(frozen=True)
class Variant:
    name: str
    batch: int = 16
    context: int = 256
    vocab: int = VOCAB
    bf16: bool = False
    fused: bool = False
    dropout: float = 0.1
    bottleneck: float = 1.0  # share of the batch's cells in the bottleneck pass (0: none)
    shape: dict = field(default_factory=lambda: {"preset": "small"})


VARIANTS = [
    Variant("baseline (today)"),
    Variant("fused AdamW", fused=True),
    Variant("bf16 autocast", bf16=True),
    Variant("dropout 0", dropout=0.0),
    Variant("no bottleneck pass", bottleneck=0.0),
    Variant("bottleneck on half the batch", bottleneck=0.5),
    Variant("vocab 25k", vocab=25_000),
    Variant("batch 32", batch=32),
    Variant("batch 64", batch=64),
    Variant("context 128, batch 32", context=128, batch=32),
    Variant("d96 x 6 layers", shape={"preset": "small", "d_model": 96, "n_layers": 6, "n_heads": 2}),
    Variant("shipped recipe: bf16 + dropout 0 + bottleneck on half", bf16=True, dropout=0.0, bottleneck=0.5),
    Variant("shipped recipe at context 128, batch 32", bf16=True, dropout=0.0, bottleneck=0.5, context=128,
            batch=32),
]


def _setup(v: Variant):
    cfg = ModelConfig.preset(v.shape["preset"], vocab_size=v.vocab, n_positions=N_POSITIONS, context_length=v.context,
                             label_sizes=LABEL_SIZES, dropout=v.dropout,
                             **{k: x for k, x in v.shape.items() if k != "preset"})
    g = torch.Generator().manual_seed(0)
    model = GRNFormer(cfg, torch.randint(0, N_POSITIONS, (v.vocab,), generator=g)).train()
    desc = {c: torch.rand(max(1, n // 4), n, generator=g) < 0.2 for c, n in LABEL_SIZES.items()}
    target = torch.poisson(torch.full((v.batch, v.context), 2.0), generator=g)
    batch = {"genes": torch.randint(0, v.vocab, (v.batch, v.context), generator=g), "target": target,
             "counts": torch.binomial(target, torch.full_like(target, 0.4), generator=g), "depth": target.sum(1) * 4,
             "labels": torch.stack([torch.randint(-1, n, (v.batch,), generator=g) for n in LABEL_SIZES.values()], 1)}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, fused=v.fused)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if v.bf16 else nullcontext()

    def step() -> None:
        scale = batch["target"].sum(1)
        with amp:
            out = model(batch["genes"], batch["counts"], batch["depth"], scale=scale)
            n = round(v.bottleneck * v.batch)
            part = replace(out, cell_emb=out.cell_emb[:n], label_emb=out.label_emb[:n])
            bott = model.bottleneck(part, batch["genes"][:n], batch["depth"][:n], scale[:n]) if n else None
        # losses in fp32 (the ZINB parameters leave the model in fp32 already)
        loss = zinb_nll(batch["target"], out.mu, out.theta, out.pi_logit).mean()
        if bott is not None:
            loss = loss + zinb_nll(batch["target"][:n], *bott).mean()
        for i, (name, logits) in enumerate(out.label_logits.items()):
            loss = loss + hierarchical_label_loss(logits.float(), batch["labels"][:, i], desc[name])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
    parser.add_argument("--out", type=Path, default=toolkit.results_path("train_levers"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = {v.name: _setup(v) for v in VARIANTS}
    for run in steps.values():  # warm-up (allocator, kernels)
        run()
    times: dict[str, list[float]] = {v.name: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for v in VARIANTS:
            for _ in range(args.steps):
                t0 = time.perf_counter()
                steps[v.name]()
                times[v.name].append(time.perf_counter() - t0)
    base = VARIANTS[0]
    base_rate = base.batch / statistics.median(times[base.name])
    rows = []
    print("| variant | s/step | cell views/s | × baseline |\n|---|---|---|---|")
    for v in VARIANTS:
        s = statistics.median(times[v.name])
        rate = v.batch / s
        rows.append({"variant": v.name, "s_per_step": s, "cells_per_s": rate, "ratio": rate / base_rate})
        print(f"| {v.name} | {s:.3f} | {rate:.1f} | {rate / base_rate:.2f} |")
    toolkit.write_record(args.out, {"torch_threads": torch.get_num_threads(), "rows": rows},
                         method={"variants": [r["variant"] for r in rows]})


if __name__ == "__main__":
    main()
