"""Samplers over a corpus: label-balanced weighted draws, and an exact per-epoch partition across ranks.

Atlases are dominated by a few label combinations (blood T cells, healthy, 10x 3'). ``LabelBalancedSampler`` gives
each cell the weight s / (n_c + s), where n_c is the number of cells sharing its label combination: combinations
much larger than s get a total mass of about s each (balanced), combinations much smaller than s keep their
natural frequency (a rare combination is not repeated hundreds of times per epoch).

Both samplers hold only int32/float64-per-group arrays, never a Python object per cell, so a 50M-cell corpus
costs ~200 MB of sampler memory. In distributed training pass ``rank``/``world_size`` and tell Lightning not to
wrap the sampler (``Trainer(use_distributed_sampler=False)``): each rank already draws its own share.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import torch

from grnformer.errors import InputError

_CHUNK = 1 << 22  # rows handled at once when building or drawing, to bound temporary memory
_YIELD = 1 << 16  # indices turned into Python ints at once (28 bytes each)


def _yield_ints(indices: np.ndarray) -> Iterator[int]:
    for lo in range(0, len(indices), _YIELD):
        yield from indices[lo:lo + _YIELD].tolist()


def combination_key(label_codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense int32 id (0..G-1) of each row's label combination, and G.

    ``label_codes`` is [n_cells, k] integer codes (-1 allowed) or an already combined 1-D key.
    """
    codes = np.asarray(label_codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise InputError(f"label codes must be integers, got dtype {codes.dtype}.")
    if codes.ndim == 1:
        codes = codes[:, None]
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise InputError(f"label codes must be a non-empty [n_cells, n_classes] array, got shape {codes.shape}.")
    n = codes.shape[0]
    if codes.shape[1] == 0:
        return np.zeros(n, dtype=np.int32), 1
    lows = codes.min(axis=0).astype(np.int64)
    spans = codes.max(axis=0).astype(np.int64) - lows + 1
    radix = int(np.prod(spans.astype(object)))  # exact, may exceed int64
    if radix <= 1 << 24:  # dense table of all possible combinations: no sort needed
        key = _mixed_radix(codes, lows, spans, np.int32)
        present = np.bincount(key, minlength=radix) > 0
        remap = (np.cumsum(present) - 1).astype(np.int32)
        for lo in range(0, n, _CHUNK):
            key[lo:lo + _CHUNK] = remap[key[lo:lo + _CHUNK]]
        return key, int(present.sum())
    if radix < 1 << 62:  # hash the packed key: O(n), no sort of all cells
        inverse, uniques = pd.factorize(_mixed_radix(codes, lows, spans, np.int64), sort=False)
        return inverse.astype(np.int32), len(uniques)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int32)
    return inverse, int(inverse.max()) + 1


def _mixed_radix(codes: np.ndarray, lows: np.ndarray, spans: np.ndarray, dtype) -> np.ndarray:
    key = np.zeros(codes.shape[0], dtype=dtype)
    for lo in range(0, codes.shape[0], _CHUNK):
        block = codes[lo:lo + _CHUNK]
        acc = np.zeros(len(block), dtype=dtype)
        for j in range(codes.shape[1]):
            acc *= dtype(spans[j])
            acc += (block[:, j] - lows[j]).astype(dtype)
        key[lo:lo + _CHUNK] = acc
    return key


def _group_order(key: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells sorted by group (int32) and each group's start offset (counting sort, chunked)."""
    counts = np.bincount(key, minlength=n_groups).astype(np.int64)
    starts = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    cursor = starts[:-1].copy()
    order = np.empty(len(key), dtype=np.int32)
    small = n_groups <= 1 << 16  # 16-bit keys: numpy's stable argsort is a linear-time radix sort
    for lo in range(0, len(key), _CHUNK):
        block = key[lo:lo + _CHUNK]
        srt = np.argsort(block.astype(np.uint16) if small else block, kind="stable")
        sk = block[srt]
        block_counts = np.bincount(sk, minlength=n_groups)
        first = np.cumsum(block_counts) - block_counts
        rank_in_group = np.arange(len(sk)) - first[sk]
        order[cursor[sk] + rank_in_group] = srt + lo
        cursor += block_counts
    return order, starts


def _resolve_rank(rank: int, world_size: int) -> tuple[int, int]:
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"rank must be in [0, world_size) with world_size >= 1, got rank={rank}, "
                         f"world_size={world_size}.")
    return int(rank), int(world_size)


class LabelBalancedSampler(torch.utils.data.Sampler[int]):
    """Weighted random cells, weight s / (n_c + s) per cell (n_c = size of its label combination).

    ``num_samples`` is the number of draws per epoch over all ranks; each rank yields
    ceil(num_samples / world_size). With replacement each rank draws from its own random stream (seed, epoch,
    rank); without replacement all ranks compute the same weighted sample and take disjoint slices of it.
    """

    def __init__(self, label_codes: np.ndarray, num_samples: int, s: float = 100.0, seed: int = 0,
                 rank: int = 0, world_size: int = 1, replacement: bool = True) -> None:
        if s <= 0:
            raise InputError(f"the balancing constant s must be positive, got {s}.")
        if num_samples < 1:
            raise InputError(f"num_samples must be at least 1, got {num_samples}.")
        self.rank, self.world_size = _resolve_rank(rank, world_size)
        key, n_groups = combination_key(label_codes)
        self.n_cells = len(key)
        self.s = float(s)
        self.seed = int(seed)
        self.replacement = replacement
        self.epoch = 0
        self.per_rank = -(-int(num_samples) // self.world_size)
        if not replacement and self.per_rank * self.world_size > self.n_cells:
            raise InputError(f"cannot draw {self.per_rank * self.world_size} distinct cells from {self.n_cells} "
                             f"without replacement: lower num_samples or use replacement=True.")
        self.order, self.group_starts = _group_order(key, n_groups)
        self.group_sizes = np.diff(self.group_starts)
        self.cell_weight = (self.s / (self.group_sizes + self.s))  # per group, float64 [G]
        mass = self.group_sizes * self.cell_weight
        self.group_probability = mass / mass.sum()
        if not replacement:
            self._key = key  # needed per epoch to look up each cell's weight
        del key

    def weights(self) -> np.ndarray:
        """Per-cell sampling probability (float32 [n_cells]); for inspection and tests."""
        p = np.empty(self.n_cells, dtype=np.float32)
        p[self.order] = np.repeat((self.group_probability / self.group_sizes).astype(np.float32), self.group_sizes)
        return p

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        if self.replacement:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.epoch, self.rank)))
            left = self.per_rank
            while left > 0:
                size = min(left, _YIELD)
                yield from self._draw(rng, size).tolist()
                left -= size
        else:
            yield from _yield_ints(self._without_replacement()[self.rank::self.world_size])

    def _draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Two-level draw: a combination with probability ∝ its mass, then a uniform cell inside it."""
        groups = rng.choice(len(self.group_probability), size=size, p=self.group_probability)
        within = (rng.random(size) * self.group_sizes[groups]).astype(np.int64)
        return self.order[self.group_starts[groups] + within]

    def _without_replacement(self) -> np.ndarray:
        """Weighted sample without replacement (exponential keys E/w, smallest k), chunked, in draw order."""
        k = self.per_rank * self.world_size
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.epoch,)))
        best_keys = np.empty(0, dtype=np.float64)
        best_cells = np.empty(0, dtype=np.int32)
        for lo in range(0, self.n_cells, _CHUNK):
            w = self.cell_weight[self._key[lo:lo + _CHUNK]]
            keys = rng.standard_exponential(len(w)) / w
            best_keys = np.concatenate([best_keys, keys])
            best_cells = np.concatenate([best_cells, np.arange(lo, lo + len(w), dtype=np.int32)])
            if len(best_keys) > k:
                top = np.argpartition(best_keys, k - 1)[:k]
                best_keys, best_cells = best_keys[top], best_cells[top]
        return best_cells[np.argsort(best_keys, kind="stable")]


class ShardedEpochSampler(torch.utils.data.Sampler[int]):
    """Every cell to exactly one rank per epoch: a shared per-epoch permutation, rank r takes every
    world_size-th entry.

    ``cells`` is the number of cells or an explicit index array (e.g. a training split). With ``even=True`` (what
    DDP needs: equal step counts on all ranks) the permutation is extended by at most world_size - 1 of its own
    first cells so that all ranks get the same length; those few cells are seen twice that epoch.
    """

    def __init__(self, cells: int | np.ndarray, shuffle: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1, even: bool = True) -> None:
        self.rank, self.world_size = _resolve_rank(rank, world_size)
        if isinstance(cells, (int, np.integer)):
            if cells < 1:
                raise InputError(f"need at least one cell to sample, got {cells}.")
            self.cells: np.ndarray | None = None
            self.n_cells = int(cells)
        else:
            self.cells = np.asarray(cells, dtype=np.int64)
            if self.cells.ndim != 1 or len(self.cells) == 0:
                raise InputError("cells must be a non-empty 1-D index array.")
            if self.cells.max() < np.iinfo(np.int32).max:
                self.cells = self.cells.astype(np.int32)
            self.n_cells = len(self.cells)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.even = even
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.even:
            return -(-self.n_cells // self.world_size)
        return len(range(self.rank, self.n_cells, self.world_size))

    def __iter__(self) -> Iterator[int]:
        order = np.arange(self.n_cells, dtype=np.int64 if self.n_cells >= 1 << 31 else np.int32)
        if self.shuffle:
            np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.epoch,))).shuffle(order)
        if self.even:
            extra = len(self) * self.world_size - self.n_cells
            if extra:
                order = np.concatenate([order, order[:extra]])
        mine = order[self.rank::self.world_size]
        yield from _yield_ints(mine if self.cells is None else self.cells[mine])
