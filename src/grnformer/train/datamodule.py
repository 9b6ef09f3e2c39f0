"""Batches for pre-training: a held-out validation split, label-balanced training draws per rank, collation.

The cells come from a shard corpus or straight from a TileDB-SOMA experiment (`SomaCells`): both are map-style
datasets with per-cell label codes, so the same samplers, split and collator serve both.
Every random choice is a function of (seed, epoch, rank, batch number): which cells (LabelBalancedSampler),
which genes and which molecules are kept (the collator, re-seeded per batch). The training loader saves its
position in Lightning checkpoints, so a resumed run sees exactly the batches the uninterrupted run would have;
the data module saves a fingerprint of its cells, so a resume over other cells is refused.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from grnformer.data.collate import CONTEXT_LENGTH, CellRecord, Collator
from grnformer.data.corpus.labels import LabelSet
from grnformer.data.corpus.sampler import (
    LabelBalancedSampler,
    ShardedEpochSampler,
    combination_key,
)
from grnformer.data.corpus.soma import SomaCells
from grnformer.data.corpus.store import Corpus
from grnformer.data.genes import GeneVocab
from grnformer.errors import InputError

_VAL_STREAM = 1 << 20  # random streams of the validation split and batches; training streams are keyed by rank
_SPLIT_CHUNK = 1 << 22


def split_cells(n_cells: int, val_fraction: float, seed: int,
                ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) cell indices: each cell is held out with probability `val_fraction`.

    The draw for cell i depends only on (seed, i), so cells appended to a corpus never move existing ones; with
    `ids` (stable non-negative ids of the n_cells cells, e.g. SOMA joinids) only on (seed, ids[i]), so selecting
    other cells of an experiment never moves a cell between the sides either.
    """
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    n_draws = n_cells if ids is None else int(ids.max()) + 1
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_VAL_STREAM,)))
    held = np.concatenate([rng.random(min(_SPLIT_CHUNK, n_draws - lo)) < val_fraction
                           for lo in range(0, n_draws, _SPLIT_CHUNK)] or [np.zeros(0, bool)])
    if ids is not None:
        held = held[ids]
    dtype = np.int32 if n_cells < 1 << 31 else np.int64
    return np.flatnonzero(~held).astype(dtype), np.flatnonzero(held).astype(dtype)


class _Cells(Dataset):
    """The corpus addressed by whole batches: a key (seed, cell ids) gives (seed, cell ids, records), fetched
    with the corpus's own batched read (one X query per batch for SOMA)."""

    def __init__(self, corpus: Corpus | SomaCells):
        self.corpus = corpus

    def __len__(self) -> int:
        return len(self.corpus)

    def __getitems__(self, key: tuple[int, np.ndarray]) -> tuple[int, np.ndarray, list[CellRecord]]:
        seed, cells = key
        return seed, cells, self.corpus.__getitems__(cells)


class _Collate:
    """Collator re-seeded per batch (so a batch does not depend on which worker built it), label columns kept
    in the model's order, and the corpus ids of the cells added as batch["cell"]."""

    def __init__(self, collator: Collator, label_columns: Sequence[int]):
        self.collator = collator
        self.label_columns = list(label_columns)

    def __call__(self, item: tuple[int, np.ndarray, list[CellRecord]]) -> dict[str, torch.Tensor] | None:
        seed, cells, records = item
        if not records:  # placeholder that keeps batches on their workers after a resume (see _Batches)
            return None
        self.collator.seed = seed
        self.collator.set_epoch(0)
        batch = self.collator(records)
        batch["labels"] = batch["labels"][:, self.label_columns]
        batch["cell"] = torch.as_tensor(np.asarray(cells, dtype=np.int64))
        return batch


class _Batches(Sampler):
    """Groups a cell sampler's draws into batches keyed (batch seed, corpus cell ids).

    Batch seeds mix in the epoch unless `fixed` (validation: the same batches every time). `start` skips the
    first batches of the epoch (resume). DataLoader workers take batches round-robin, so the skipped batches
    that would have gone to workers before the resume point are replaced by empty placeholders: every later
    batch is then built by the same worker as in an uninterrupted run.
    """

    def __init__(self, sampler: Sampler, cells: np.ndarray, batch_size: int, seed: int, stream: int,
                 drop_last: bool, num_workers: int, fixed: bool = False):
        self.sampler, self.cells, self.batch_size = sampler, cells, batch_size
        self.seed, self.stream, self.drop_last, self.fixed = seed, stream, drop_last, fixed
        self.num_workers = num_workers
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        if self.fixed:
            return
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        draws = np.fromiter(iter(self.sampler), dtype=np.int64, count=len(self.sampler))
        first_real = self.start
        first_kept = first_real - first_real % max(1, self.num_workers)
        for b in range(first_kept, len(self)):
            if b < first_real:
                yield 0, self.cells[:0]
                continue
            seed = int(np.random.SeedSequence(self.seed, spawn_key=(self.stream, self.epoch, b))
                       .generate_state(1, np.uint64)[0] >> 1)
            yield seed, self.cells[draws[b * self.batch_size:(b + 1) * self.batch_size]]


class _ResumableLoader(DataLoader):
    """A DataLoader whose position in the epoch goes into Lightning checkpoints (state_dict/load_state_dict)."""

    batch_sampler: _Batches

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._done = 0            # batches handed out this epoch
        self._resume: dict | None = None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        plan = self.batch_sampler
        resume, self._resume = self._resume, None
        plan.start = resume["batches"] if resume and resume["epoch"] == plan.epoch else 0
        self._done = plan.start
        for batch in super().__iter__():
            if batch is None:
                continue
            self._done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.batch_sampler.epoch, "batches": self._done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = dict(state)


class CorpusDataModule(LightningDataModule):
    """Training and validation batches from a corpus: a corpus directory (see `data.corpus.build.build_corpus`), an
    opened `Corpus`, or a `SomaCells` (whose validation split is keyed by soma_joinid, see `split_cells`).

    batch_size: cells per batch per process; context_length: genes per cell; val_fraction: share of cells held
    out for validation (same cells for a given seed); s: label-balancing constant of `LabelBalancedSampler`, or
    None for no balancing (every training cell exactly once per epoch, on exactly one rank); replacement: whether
    balanced draws are with replacement (without: the ranks' draws of an epoch are disjoint); downsample:
    fraction (or (low, high) range) of counts removed from the input for denoising; mode: the collator's gene
    selection; cells_per_epoch: draws per epoch over all ranks (default: the training cells);
    label_classes: label columns the model predicts, in its order (default: the corpus classes that have leaves).
    """

    def __init__(self, corpus: str | Path | Corpus | SomaCells, batch_size: int = 64,
                 context_length: int = CONTEXT_LENGTH, val_fraction: float = 0.02, s: float | None = 100.0,
                 replacement: bool = True, downsample: float | tuple[float, float] | None = (0.55, 0.7),
                 num_workers: int = 0, seed: int = 0, mode: str = "random-expressed",
                 cells_per_epoch: int | None = None, label_classes: Sequence[str] | None = None):
        super().__init__()
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}.")
        if num_workers < 0:
            raise InputError(f"num_workers must be >= 0, got {num_workers}.")
        self.corpus = corpus if isinstance(corpus, (Corpus, SomaCells)) else Corpus(corpus)
        self.vocab: GeneVocab = self.corpus.vocab
        full = self.corpus.label_set or LabelSet({})
        if label_classes is None:
            label_classes = [c for c, n in full.sizes.items() if n > 0]
        unknown = [c for c in label_classes if c not in full.encoders]
        if unknown:
            raise InputError(f"label classes {unknown} are not in the corpus (it has {list(full.classes)}).")
        self.label_set = LabelSet({c: full.encoders[c] for c in label_classes})
        self.label_columns = [self.corpus.label_classes.index(c) for c in label_classes]
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.s, self.replacement = (None if s is None else float(s)), bool(replacement)
        self.collator = Collator(self.vocab, context_length, mode=mode, downsample=downsample, seed=seed)
        self.cell_ids = self.corpus.joinids if isinstance(self.corpus, SomaCells) else None
        self.train_cells, self.val_cells = split_cells(len(self.corpus), val_fraction, seed, self.cell_ids)
        if val_fraction > 0 and len(self.val_cells) == 0:
            raise InputError(f"val_fraction {val_fraction} holds out no cell of {len(self.corpus)}: raise it.")
        self.cells_per_epoch = int(cells_per_epoch or len(self.train_cells))

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the cells, their split and their label codes: what an exact resume needs unchanged."""
        h = hashlib.blake2b(digest_size=16)
        h.update(np.int64(len(self.corpus)))
        for array in (self.cell_ids, self.train_cells):
            if array is not None:
                h.update(np.ascontiguousarray(array))
        for lo in range(0, len(self.corpus), _SPLIT_CHUNK):
            h.update(np.ascontiguousarray(self.corpus.label_codes[lo:lo + _SPLIT_CHUNK, self.label_columns]))
        return h.hexdigest()

    def state_dict(self) -> dict[str, str]:
        return {"cells": self.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Refuse a checkpoint trained on other cells: its saved loader position would replay other draws."""
        if state.get("cells") != self.fingerprint:
            raise InputError("the checkpoint was trained on other cells than this configuration selects (another "
                             "corpus, SOMA experiment or obs filter, other labels or validation split): it cannot "
                             "resume exactly here: resume with the data settings it was trained with.")

    def check_resume(self, checkpoint: str | Path) -> None:
        """`load_state_dict` on a checkpoint's saved state before training starts (nothing written yet)."""
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        if type(self).__qualname__ in saved:  # where Lightning keeps a data module's state_dict
            self.load_state_dict(saved[type(self).__qualname__])

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, cls: type[DataLoader], batches: _Batches) -> DataLoader:
        return cls(_Cells(self.corpus), batch_sampler=batches, collate_fn=_Collate(self.collator, self.label_columns),
                   num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                   pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> _ResumableLoader:
        rank, world = self._rank()
        sampler: Sampler
        if self.s is None:
            sampler = ShardedEpochSampler(len(self.train_cells), shuffle=True, seed=self.seed, rank=rank,
                                          world_size=world, even=True)
        else:
            key, _ = combination_key(self.corpus.label_codes[:, self.label_columns])
            sampler = LabelBalancedSampler(key[self.train_cells], self.cells_per_epoch, s=self.s, seed=self.seed,
                                           rank=rank, world_size=world, replacement=self.replacement)
        if len(sampler) < self.batch_size:
            raise InputError(f"{len(sampler)} cells per epoch and process is less than one batch of "
                             f"{self.batch_size}: lower batch_size or raise cells_per_epoch.")
        batches = _Batches(sampler, self.train_cells, self.batch_size, self.seed, stream=rank, drop_last=True,
                           num_workers=self.num_workers)
        return self._loader(_ResumableLoader, batches)

    def val_dataloader(self) -> DataLoader | list:
        if len(self.val_cells) == 0:
            return []
        rank, world = self._rank()
        order = ShardedEpochSampler(len(self.val_cells), shuffle=False, rank=rank, world_size=world, even=True)
        batches = _Batches(order, self.val_cells, self.batch_size, self.seed, stream=_VAL_STREAM + rank,
                           drop_last=False, num_workers=self.num_workers, fixed=True)
        return self._loader(DataLoader, batches)
