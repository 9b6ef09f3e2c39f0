"""Adapting a model to a user's cells before using it (`train.finetune`): in memory, for grn --adapt-steps, and as
the CLI's `adapt` (a new checkpoint file)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from anndata import AnnData

from grnformer.bundle.checkpoint import Bundle, save_bundle
from grnformer.inference.device import load_task_bundle
from grnformer.inference.file_runner import run_file
from grnformer.inference.prepared import prepare_input
from grnformer.tasks.task_options import AdaptOptions
from grnformer.train.finetune import adapt


def adapt_bundle(bundle: Bundle | str | Path, adata: AnnData, options: AdaptOptions | None = None, *,
                 device: str | torch.device | None = None) -> tuple[Bundle, dict[str, Any]]:
    """A copy of the model fine-tuned on ``adata``'s cells, and the summary of the run (see `train.finetune`)."""
    opts = options or AdaptOptions()
    bundle, dev = load_task_bundle(bundle, device)
    prep = prepare_input(bundle, adata, opts.organism)
    cells = prep.cells
    if opts.max_cells is not None and prep.n_cells > opts.max_cells:
        rows = np.sort(np.random.default_rng(opts.seed).choice(prep.n_cells, opts.max_cells, replace=False))
        cells = type(cells)(prep.adata[rows].copy(), bundle.vocab, bundle.labels)
    return adapt(bundle, cells, opts.steps, lr=opts.lr, batch_size=opts.batch_size, seed=opts.seed, device=dev)


def adapt_file(checkpoint: str | Path | Bundle, in_path: str | Path, out: str | Path,
               options: AdaptOptions | None = None, *, device: str | torch.device | None = None) -> Path:
    """CLI entry: the adapted model written as a bundle (same weight dtype as the source), usable as CKPT by
    every other command; its metadata holds the run's summary, also printed."""
    return run_file(checkpoint, in_path, out,
                    lambda bundle, adata, dev: adapt_bundle(bundle, adata, options, device=dev),
                    _save_adapted, report=lambda result: print(json.dumps(result[1], indent=1), file=sys.stderr),
                    device=device)


def _save_adapted(adata: AnnData, result: tuple[Bundle, dict[str, Any]], out: Path) -> Path:
    adapted = result[0]
    return save_bundle(adapted.model, adapted.config, adapted.vocab, adapted.labels, out,
                       dtype=adapted.meta.get("dtype", "float32"), history=adapted.meta["history"])
