"""Zero-shot inference over shards of cells on several processes (torch.distributed: `torchrun` on one machine or
many), giving what one process gives.

How the work is shared: `run_model`'s batches are dealt round-robin to the ranks (batch i to rank i mod world).
Every rank still collates every batch, because the collators draw random contexts from one seeded stream per
run; a rank that skipped other ranks' batches would draw other contexts for its own and no longer match one
process. Collating is a few numpy calls per cell; the model's forward pass, the cost, runs once per batch.

How results come back: per-cell arrays are filled on the rows a rank ran and zero elsewhere, so their sum over
ranks (an all-reduce) is each row's one value, in input order; how many times each row was run is all-reduced
beside them and must be exactly 1 (no cell lost or duplicated). Accumulators over cells (`networks.attention`:
q/k sums, attention sums, cell counts) are sums, all-reduced in place. Sparse outputs (denoise) are gathered
entry lists. Only rank 0 writes files (`inference.outputs`), after the all-reduce, so an interrupted run writes
nothing, and the atomic writers leave no partial file.

Why not Lightning's predict loop: its DistributedSampler pads the last shard with repeated cells and each rank's
collator would draw its own contexts, so results would depend on the number of ranks; the tasks already share
one loop (`inference.loop`), which this shards. Training stays on Lightning (`train.pretrain`).

`run_model(..., sharded=True)` opts in: a consumer that does not combine its results (diffnet, knock-outs) runs
every batch on every rank, which is slower but still right.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

_SHARD: ContextVar[Shard | None] = ContextVar("grnformer_shard", default=None)


@dataclass
class Shard:
    """This process's place among the ranks, and the rows its batches covered in the latest sharded loop."""

    rank: int
    world: int
    rows: list[np.ndarray] = field(default_factory=list)

    def owns(self, batch_index: int) -> bool:
        return batch_index % self.world == self.rank


def current_shard() -> Shard | None:
    """The shard of this process inside `sharded` (None: one process runs everything)."""
    return _SHARD.get()


def is_writer() -> bool:
    """Whether this process writes output files (rank 0, or a run without ranks)."""
    shard = current_shard()
    return shard is None or shard.rank == 0


@contextmanager
def sharded(rank: int | None = None, world: int | None = None) -> Iterator[Shard]:
    """Run the tasks inside on this rank's share of the cells (the process group must be initialised; rank and
    world default to its)."""
    shard = Shard(dist.get_rank() if rank is None else rank, dist.get_world_size() if world is None else world)
    token = _SHARD.set(shard)
    try:
        yield shard
    finally:
        _SHARD.reset(token)


@contextmanager
def launched() -> Iterator[Shard | None]:
    """For the CLI under `torchrun` (WORLD_SIZE > 1 in the environment): join the process group (NCCL on GPUs,
    gloo on CPUs), pin this rank's GPU, and shard the command's cells; without torchrun, nothing happens."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield None
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        with sharded() as shard:
            if shard.rank == 0:
                print(f"{shard.world} ranks ({dist.get_backend()}): cells shared batch by batch; rank 0 writes once "
                      f"every rank is done, so an interrupted run leaves no output and a re-run starts clean (grn "
                      f"keeps finished networks and says so)", file=sys.stderr)
            yield shard
    finally:
        dist.destroy_process_group()


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _check_rows(shard: Shard, n_rows: int) -> None:
    """Every row of the outputs was run by exactly one rank (RuntimeError otherwise)."""
    counts = torch.zeros(n_rows, dtype=torch.int32, device=_device())
    for rows in shard.rows:
        counts[torch.as_tensor(rows, dtype=torch.long, device=counts.device)] += 1
    dist.all_reduce(counts)
    wrong = torch.nonzero(counts != 1).squeeze(1)
    if len(wrong):
        raise RuntimeError(f"{len(wrong)} cells were run {sorted(set(counts[wrong].tolist()))} times over the ranks "
                           f"(first: row {int(wrong[0])}); each must run once.")


def combine_rows(values: np.ndarray) -> np.ndarray:
    """Per-cell results [rows, ...] of every rank in input order: each rank holds its rows, zeros elsewhere."""
    shard = current_shard()
    if shard is None:
        return values
    _check_rows(shard, len(values))
    total = torch.from_numpy(np.ascontiguousarray(values)).to(_device())
    dist.all_reduce(total)
    return total.cpu().numpy()


def combine_entries(*parts: np.ndarray, n_rows: int) -> list[np.ndarray]:
    """Entry lists (e.g. rows, columns, values of a sparse output) of every rank, concatenated."""
    shard = current_shard()
    if shard is None:
        return list(parts)
    _check_rows(shard, n_rows)
    gathered: list[object] = [None] * shard.world
    dist.all_gather_object(gathered, [np.asarray(p) for p in parts])
    return [np.concatenate([g[i] for g in gathered]) for i in range(len(parts))]


def combine_sums(accumulator: object) -> None:
    """All-reduce, in place, every tensor of an accumulator over cells (`networks.attention`'s MeanQK,
    MeanAttention): its sums and cell counts."""
    shard = current_shard()
    if shard is None:
        return
    for value in vars(accumulator).values():
        if isinstance(value, torch.Tensor):
            dist.all_reduce(value)
