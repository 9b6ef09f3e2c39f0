"""Adapting a model to a user's cells before using it (`train.adapt`): in memory, for grn --adapt-steps, and as
the CLI's `adapt` (a new checkpoint file)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from anndata import AnnData

from grnformer.inference.device import load_task_bundle
from grnformer.inference.outputs import check_writable
from grnformer.inference.prepared import prepare_input, read_input
from grnformer.tasks.options import AdaptOptions
from grnformer.train.adapt import adapt
from grnformer.train.checkpoint import Bundle, save_bundle


def adapt_bundle(bundle: Bundle | str | Path, adata: AnnData, options: AdaptOptions | None = None, *,
                 device: str | torch.device | None = None) -> tuple[Bundle, dict[str, Any]]:
    """A copy of the model fine-tuned on ``adata``'s cells, and the summary of the run (see `train.adapt`)."""
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
    check_writable(out)
    adapted, summary = adapt_bundle(checkpoint, read_input(in_path), options, device=device)
    dtype = adapted.meta.get("dtype", "float32")
    path = save_bundle(adapted.model, adapted.config, adapted.vocab, adapted.labels, out, dtype=dtype,
                       history=adapted.meta["history"])
    print(json.dumps(summary, indent=1), file=sys.stderr)
    return path
