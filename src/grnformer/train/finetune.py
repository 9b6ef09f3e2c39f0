"""Self-supervised adaptation of a trained model to a user's cells: a short fine-tune, no labels.

Why: the shipped model saw few cell types; its attention (the networks) and its expression predictions are
blurred on cells unlike its corpus. A few hundred steps of the pre-training's own self-supervised terms —
denoising (predict the original counts from thinned ones) and the bottleneck (predict them from the cell
token alone) — on the user's cells move it towards them without any annotation. Label losses weigh zero, so
the classifier heads are left as they are. It reuses `PretrainPlan.losses` and its optimiser; a plain loop
replaces the Lightning Trainer because there is no validation, checkpointing or distribution to manage.

A held-out tenth of the cells (at least one) is scored before and after with the same context draws, so the
caller can see whether adaptation fitted the cells rather than only the training batches.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from grnformer.bundle.checkpoint import Bundle
from grnformer.data.collate import Collator
from grnformer.data.corpus.store import AnnDataCells
from grnformer.errors import InputError
from grnformer.train.plan import OptimConfig, PretrainPlan

DOWNSAMPLE = (0.55, 0.7)  # fraction of counts removed from the input, as in pre-training


def _held_out_loss(plan: PretrainPlan, cells: AnnDataCells, rows: np.ndarray, collator: Collator,
                   device: torch.device, seed: int) -> float:
    """Mean self-supervised loss over ``rows`` with a fixed seed (same draws before and after)."""
    plan.model.eval()
    torch.manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(rows), 16):
            batch = {k: v.to(device) for k, v in collator(cells.__getitems__(rows[start:start + 16].tolist())).items()}
            total += float(plan.losses(batch)["loss"]) * len(batch["genes"])
    return total / len(rows)


def adapt(bundle: Bundle, cells: AnnDataCells, steps: int, *, lr: float = 1e-4, batch_size: int = 16,
          seed: int = 0, device: torch.device | str = "cpu") -> tuple[Bundle, dict[str, Any]]:
    """A copy of ``bundle`` fine-tuned for ``steps`` optimiser steps on ``cells`` (prepared records); the
    original is untouched. Returns it (eval mode) and a summary (losses before/after on held-out cells)."""
    if steps < 1 or batch_size < 1 or lr <= 0:
        raise InputError(f"adaptation needs steps >= 1, batch_size >= 1 and lr > 0 (got {steps}, {batch_size}, "
                         f"{lr}).")
    n = len(cells)
    if n < 2:
        raise InputError(f"adaptation needs at least 2 cells (got {n}).")
    device = torch.device(device)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    held, train = np.sort(order[:max(1, n // 10)]), order[max(1, n // 10):]
    model = copy.deepcopy(bundle.model).float().to(device)
    weights = {"denoise": 1.0, "bottleneck": 1.0, **{c: 0.0 for c in bundle.labels.classes}}
    plan = PretrainPlan(model, bundle.vocab, bundle.labels, loss_weights=weights, seed=seed,
                        optim=OptimConfig(lr=lr, warmup_steps=max(1, steps // 10), max_steps=steps))
    collator = Collator(bundle.vocab, bundle.config.context_length, mode="random-expressed", downsample=DOWNSAMPLE,
                        seed=seed)
    scored = Collator(bundle.vocab, bundle.config.context_length, mode="random-expressed", downsample=DOWNSAMPLE,
                      seed=seed + 1)
    before = _held_out_loss(plan, cells, held, scored, device, seed)
    optimisers = plan.configure_optimizers()
    opt, sched = optimisers["optimizer"], optimisers["lr_scheduler"]["scheduler"]
    t0, losses = time.perf_counter(), []
    for step in range(steps):
        model.train()
        torch.manual_seed(seed * 1_000_003 + step)
        rows = rng.choice(train, size=min(batch_size, len(train)), replace=False)
        batch = {k: v.to(device) for k, v in collator(cells.__getitems__(rows.tolist())).items()}
        loss = plan.losses(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    seconds = time.perf_counter() - t0
    scored = Collator(bundle.vocab, bundle.config.context_length, mode="random-expressed", downsample=DOWNSAMPLE,
                      seed=seed + 1)
    after = _held_out_loss(plan, cells, held, scored, device, seed)
    model.eval()
    summary = {"steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed, "train_cells": int(len(train)),
               "held_out_cells": int(len(held)), "held_out_loss_before": before, "held_out_loss_after": after,
               "train_loss_first": float(np.mean(losses[:max(1, steps // 10)])),
               "train_loss_last": float(np.mean(losses[-max(1, steps // 10):])), "seconds": seconds}
    meta = {**bundle.meta, "history": {**bundle.meta.get("history", {}), "adaptation": summary}}
    return Bundle(model, bundle.config, bundle.vocab, bundle.labels, meta), summary
