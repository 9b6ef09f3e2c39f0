"""The loop every zero-shot task shares: cell records → collated contexts → model outputs, in batches with a
progress bar; tasks differ only in which genes make up a context and what they keep from each output."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from grnformer.bundle.checkpoint import Bundle
from grnformer.data.collate import CellRecord, Collator
from grnformer.errors import InputError
from grnformer.inference.device import autocast
from grnformer.inference.distributed import current_shard, is_writer
from grnformer.inference.option_fields import DEFAULT_BATCH_SIZE
from grnformer.inference.prepared import Prepared
from grnformer.model import ModelOutput


def run_model(bundle: Bundle, prep: Prepared, rows: np.ndarray,
              collators: Sequence[Callable[[list[CellRecord]], dict[str, torch.Tensor]]],
              device: torch.device, batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "auto",
              return_qk: bool = False, progress: bool = True, desc: str = "cells", depth_scale: float = 1.0,
              contexts_per_row: np.ndarray | None = None, sharded: bool = False
              ) -> Iterator[tuple[np.ndarray, int, dict[str, torch.Tensor], ModelOutput]]:
    """Yield (prepared rows, collator index, batch on device, output) for every batch of ``rows`` and every
    collator (a `Collator` or any function of records to a batch; one per gene chunk, or a single one).
    Gradients off, model in eval mode. The model is told ``depth_scale`` × each cell's depth (depth token), and
    its means share out ``depth_scale`` × the counts each context holds (what a context of that cell would hold
    at that depth). ``contexts_per_row`` (aligned with ``rows``): how many contexts the collator makes of each
    row, when it makes more than one (denoise); see `row_batches`. ``sharded``: the caller combines its results
    over ranks (`inference.distributed`), so inside `distributed.sharded` this rank runs only its batches."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1 (got {batch_size}).")
    model = bundle.model.eval()
    shard = current_shard() if sharded else None
    if shard is not None:
        shard.rows.clear()
    with tqdm(total=len(rows) * len(collators), unit="cell", desc=desc, disable=not progress or not is_writer()
              ) as bar:
        for i, batch_rows in enumerate(row_batches(rows, batch_size, contexts_per_row)):
            records = prep.records(batch_rows)
            mine = shard is None or shard.owns(i)
            if shard is not None and mine:
                shard.rows.append(batch_rows)
            for c, collator in enumerate(collators):
                collated = collator(records)  # every rank collates every batch: one stream of random contexts
                if not mine:
                    bar.update(len(batch_rows))
                    continue
                batch = {k: v.to(device, non_blocking=True) for k, v in collated.items()}
                with torch.inference_mode(), autocast(device, precision):
                    out = model(batch["genes"], batch["counts"], batch["depth"] * depth_scale,
                                scale=batch["counts"].sum(dim=-1) * depth_scale, return_qk=return_qk)
                yield batch_rows, c, batch, out
                bar.update(len(batch_rows))


def row_batches(rows: np.ndarray, batch_size: int, contexts_per_row: np.ndarray | None = None
                ) -> list[np.ndarray]:
    """Consecutive runs of ``rows`` holding at most ``batch_size`` contexts each (at least one row): a forward
    pass over more contexts than the batch size is slower per context on CPU, by 28% at 128 against 32
    (PBMC3k, 1 thread: the activations outgrow the cache), which is what made denoise's batches of 32 cells ×
    ~3.7 contexts slow. Without ``contexts_per_row``, one context per row: runs of ``batch_size`` rows."""
    if contexts_per_row is None:
        return [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]
    batches, start, held = [], 0, 0
    for i, n in enumerate(np.asarray(contexts_per_row)[:len(rows)]):
        if held and held + n > batch_size:
            batches.append(rows[start:i])
            start, held = i, 0
        held += int(n)
    if start < len(rows):
        batches.append(rows[start:])
    return batches


def context_collator(bundle: Bundle, mode: str = "random-expressed", gene_tokens: np.ndarray | None = None,
                     context_length: int | None = None, seed: int = 0) -> Collator:
    """A collator without down-sampling (inference sees the counts as measured), seeded for reproducibility."""
    return Collator(bundle.vocab, context_length or bundle.config.context_length, mode=mode,
                    gene_list=gene_tokens, downsample=None, seed=seed)
