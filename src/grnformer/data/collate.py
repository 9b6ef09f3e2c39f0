"""Cell records and the collator that turns them into fixed-size model contexts.

A cell reaches the model as a context of L genes: some of its expressed genes (chosen by ``mode``), padded with
random genes of its organism that it does not express, so every cell in a batch has the same shape and the model
also learns what absence looks like. For the denoising task the input counts are thinned binomially while the
target keeps the original counts and ``depth`` the original library size.

The collator runs inside DataLoader workers, so it draws from a per-worker random generator (seeded from
``seed``, the worker id and the epoch) and avoids per-gene Python work: a few numpy calls per cell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from grnformer.data.genes import GeneVocab, organism_id
from grnformer.errors import InputError

MODES = ("random-expressed", "most-expressed", "all", "given")
CONTEXT_LENGTH = 2200  # genes per context (the reference model's); the model, collator and data module default to it
MOLECULE_CAP = 16  # counts up to this are thinned molecule by molecule (see binomial_thinning)


@dataclass
class CellRecord:
    """One cell as stored: its nonzero genes (token ids), their raw counts, label codes and organism."""

    genes: np.ndarray  # int64 [n_expressed] token ids
    counts: np.ndarray  # float32 [n_expressed] raw counts (> 0)
    labels: np.ndarray  # int64 [n_label_classes] codes, -1 unknown
    organism: str  # NCBITaxon term, e.g. "NCBITaxon:9606"


class Collator:
    """Batch CellRecords into the model's batch dict (see docs/ARCHITECTURE.md).

    mode: ``random-expressed`` (a random subset of expressed genes), ``most-expressed`` (the top counts), ``all``
    (every expressed gene; L is the largest cell of the batch), ``given`` (``gene_list``, same order for every
    cell, 0 where not expressed). ``downsample`` is the fraction of counts to remove for denoising: a float, or a
    (lo, hi) range drawn per cell; None leaves counts unchanged. Thinning covers the whole cell, so
    ``input_depth`` is the thinned library size, while gene selection follows the original profile (genes thinned
    to zero stay in the context: reconstructing them is the denoising task).
    """

    def __init__(self, vocab: GeneVocab, context_length: int = CONTEXT_LENGTH, mode: str = "random-expressed",
                 gene_list: Sequence | None = None, downsample: float | tuple[float, float] | None = None,
                 seed: int | None = None) -> None:
        if mode not in MODES:
            raise InputError(f"unknown collator mode '{mode}': choose one of {', '.join(MODES)}.")
        if mode != "given" and context_length < 1:
            raise InputError(f"context_length must be a positive number of genes, got {context_length}.")
        self.vocab_size = len(vocab)
        self.mode = mode
        self.context_length = int(context_length)
        self.seed = seed
        self.downsample = _check_downsample(downsample)
        self._organisms = np.asarray(vocab.table["organism"].to_numpy(), dtype=object)
        self._org_genes: dict[str, np.ndarray] = {}
        self._expressed = np.zeros(self.vocab_size, dtype=bool)  # scratch mask, always reset to False
        self._slot_of = np.zeros(self.vocab_size, dtype=np.int64)  # scratch for de-duplicating padding draws
        self._epoch = 0
        self._rng: np.random.Generator | None = None
        self._rng_owner: tuple[int, int, int] | None = None
        self.gene_list: np.ndarray | None = None
        if mode == "given":
            self.gene_list = _given_tokens(vocab, gene_list)
            self.context_length = len(self.gene_list)
            self._given_slot = np.full(self.vocab_size, -1, dtype=np.int64)
            self._given_slot[self.gene_list] = np.arange(len(self.gene_list))
        elif gene_list is not None:
            raise InputError("gene_list is only used with mode='given'.")

    def set_epoch(self, epoch: int) -> None:
        """Mix the epoch into the random stream (call before creating the epoch's DataLoader iterator; with
        persistent workers the workers keep their copy, whose streams simply continue)."""
        self._epoch = int(epoch)
        self._rng = None

    def _generator(self) -> np.random.Generator:
        """A generator owned by this process and worker: forked workers must not share a stream."""
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else -1
        owner = (os.getpid(), worker, self._epoch)
        if self._rng is None or self._rng_owner != owner:
            if self.seed is not None:
                seq = np.random.SeedSequence(self.seed, spawn_key=(self._epoch, worker + 1))
            elif info is not None:  # torch derives a fresh per-worker seed every epoch
                seq = np.random.SeedSequence(info.seed)
            else:
                seq = np.random.SeedSequence()
            self._rng, self._rng_owner = np.random.default_rng(seq), owner
        return self._rng

    def _organism_genes(self, organism: str) -> np.ndarray:
        genes = self._org_genes.get(organism)
        if genes is None:
            genes = np.flatnonzero(self._organisms == organism_id(organism))
            if len(genes) == 0:
                raise InputError(f"the vocabulary has no genes of organism {organism}.")
            self._org_genes[organism] = genes
        return genes

    def __call__(self, records: Sequence[CellRecord]) -> dict[str, torch.Tensor]:
        if len(records) == 0:
            raise InputError("cannot collate an empty list of cells.")
        rng = self._generator()
        lens = np.fromiter((len(r.genes) for r in records), dtype=np.int64, count=len(records))
        starts = np.zeros(len(records) + 1, dtype=np.int64)
        np.cumsum(lens, out=starts[1:])
        genes = np.concatenate([r.genes for r in records]).astype(np.int64, copy=False)
        target = np.concatenate([r.counts for r in records]).astype(np.float32, copy=False)
        cell = np.repeat(np.arange(len(records)), lens)
        inputs = self._thin(rng, target, lens, cell)
        depth = np.bincount(cell, weights=target, minlength=len(records)).astype(np.float32)
        input_depth = np.bincount(cell, weights=inputs, minlength=len(records)).astype(np.float32)
        if self.mode == "given":
            out_genes, out_counts, out_target = self._given(genes, inputs, target, cell, len(records))
        else:
            out_genes, out_counts, out_target = self._contexts(rng, records, genes, inputs, target, starts)
        labels = np.stack([np.asarray(r.labels, dtype=np.int64) for r in records])
        return {
            "genes": torch.from_numpy(out_genes),
            "counts": torch.from_numpy(out_counts),
            "target": torch.from_numpy(out_target),
            "depth": torch.from_numpy(depth),
            "input_depth": torch.from_numpy(input_depth),
            "labels": torch.from_numpy(labels),
        }

    def _thin(self, rng: np.random.Generator, counts: np.ndarray, lens: np.ndarray, cell: np.ndarray
              ) -> np.ndarray:
        """Input counts for denoising: the whole cell thinned with a removal fraction fixed or drawn per cell."""
        if self.downsample is None:
            return counts
        if isinstance(self.downsample, tuple):
            keep = 1.0 - rng.uniform(*self.downsample, size=len(lens))
        else:
            keep = np.full(len(lens), 1.0 - self.downsample)
        return binomial_thinning(rng, counts, lens, cell, keep)

    def _given(self, genes: np.ndarray, inputs: np.ndarray, target: np.ndarray, cell: np.ndarray,
               n_cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scatter each cell's counts into the fixed gene list; genes outside the list are dropped."""
        L = self.context_length
        slot = self._given_slot[genes]
        hit = slot >= 0
        out_counts = np.zeros((n_cells, L), dtype=np.float32)
        out_target = np.zeros((n_cells, L), dtype=np.float32)
        out_counts[cell[hit], slot[hit]] = inputs[hit]
        out_target[cell[hit], slot[hit]] = target[hit]
        out_genes = np.broadcast_to(self.gene_list, (n_cells, L)).copy()
        return out_genes, out_counts, out_target

    def _contexts(self, rng: np.random.Generator, records: Sequence[CellRecord], genes: np.ndarray,
                  inputs: np.ndarray, target: np.ndarray, starts: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pick each cell's expressed genes, then pad the rest of its row with genes it does not express."""
        lens = np.diff(starts)
        L = int(lens.max()) if self.mode == "all" else self.context_length
        out_genes = np.empty((len(records), L), dtype=np.int64)
        out_counts = np.zeros((len(records), L), dtype=np.float32)
        out_target = np.zeros((len(records), L), dtype=np.float32)
        for b, record in enumerate(records):
            lo, n = int(starts[b]), int(lens[b])
            if n > L:
                if self.mode == "most-expressed":
                    pick = np.argpartition(-target[lo:lo + n], L - 1)[:L]
                else:
                    pick = rng.choice(n, L, replace=False)
                pick += lo
                m = L
            else:
                pick, m = slice(lo, lo + n), n
            out_genes[b, :m] = genes[pick]
            out_counts[b, :m] = inputs[pick]
            out_target[b, :m] = target[pick]
            if m < L:
                out_genes[b, m:] = self._padding(rng, record.organism, genes[lo:lo + n], L - m)
        return out_genes, out_counts, out_target

    def _padding(self, rng: np.random.Generator, organism: str, expressed: np.ndarray, need: int) -> np.ndarray:
        """``need`` distinct genes of the organism drawn uniformly among those the cell does not express.

        Draws with replacement, drops expressed genes and repeats, keeps the first ``need``: which genes survive
        depends only on draw positions, never on gene identity, so the result is a uniform subset. Cheaper than
        sampling without replacement (no complement or hash set is built); falls back to the exact complement
        when the cell leaves too few genes unexpressed for rejection to be efficient.
        """
        pool = self._organism_genes(organism)
        free = len(pool) - len(expressed)
        if need > free // 2:
            complement = np.setdiff1d(pool, expressed, assume_unique=True)
            if need > len(complement):
                raise InputError(f"context_length {self.context_length} exceeds the {len(complement)} genes of "
                                 f"{organism} a cell does not express: lower context_length.")
            return rng.choice(complement, need, replace=False)
        draws = int(1.1 * need * len(pool) / free + need * need / free) + 64  # rejections + expected repeats
        self._expressed[expressed] = True
        try:
            while True:
                drawn = pool[rng.integers(0, len(pool), draws)]
                drawn = drawn[~self._expressed[drawn]]
                order = np.arange(len(drawn))
                self._slot_of[drawn] = order  # for a repeated gene one of its positions wins
                drawn = drawn[self._slot_of[drawn] == order]
                if len(drawn) >= need:
                    return drawn[:need]
                draws *= 2
        finally:
            self._expressed[expressed] = False

def binomial_thinning(rng: np.random.Generator, counts: np.ndarray, lens: np.ndarray, cell: np.ndarray,
                      keep: np.ndarray) -> np.ndarray:
    """Binomial(count, keep[cell]) per gene: every molecule kept independently with its cell's probability.

    ``counts`` holds the cells one after another (``lens`` genes each, ``cell`` = owning cell per gene).
    numpy's binomial costs ~50 ns a draw whatever the count, and single-cell counts are mostly 1-3 molecules, so
    counts up to MOLECULE_CAP draw one uniform per molecule and sum them per gene (about 3x faster); larger
    counts use rng.binomial.
    """
    n = counts.astype(np.int64)
    small = n <= MOLECULE_CAP
    per_gene = np.where(small, n, 0)
    per_cell = np.bincount(cell, weights=per_gene, minlength=len(lens)).astype(np.int64)
    hit = rng.random(int(per_cell.sum()), dtype=np.float32) < np.repeat(keep.astype(np.float32), per_cell)
    kept = np.zeros(len(hit) + 1, dtype=np.int64)
    np.cumsum(hit, out=kept[1:])
    ends = np.cumsum(per_gene)
    out = (kept[ends] - kept[ends - per_gene]).astype(np.float32)
    big = np.flatnonzero(~small)
    if len(big):
        out[big] = rng.binomial(n[big], keep[cell[big]])
    return out


def _check_downsample(value) -> float | tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InputError(f"downsample range must be (low, high), got {value!r}.")
        lo, hi = float(value[0]), float(value[1])
        if not 0.0 <= lo <= hi < 1.0:
            raise InputError(f"downsample range must satisfy 0 <= low <= high < 1, got ({lo}, {hi}).")
        return (lo, hi)
    frac = float(value)
    if not 0.0 <= frac < 1.0:
        raise InputError(f"downsample is the fraction of counts to remove, in [0, 1); got {frac}.")
    return frac


def _given_tokens(vocab: GeneVocab, gene_list: Sequence | None) -> np.ndarray:
    """Token ids of a user gene list given as token ids or Ensembl IDs; unknown or repeated genes are errors."""
    if gene_list is None or len(gene_list) == 0:
        raise InputError("mode='given' needs a non-empty gene_list (token ids or Ensembl IDs).")
    values = np.asarray(gene_list)
    if np.issubdtype(values.dtype, np.integer):
        tokens = values.astype(np.int64)
        bad = (tokens < 0) | (tokens >= len(vocab))
        if bad.any():
            raise InputError(f"gene_list has token ids outside the vocabulary (0..{len(vocab) - 1}): "
                             f"{tokens[bad][:5].tolist()}.")
    else:
        tokens = vocab.index(values.astype(str))
        if (tokens < 0).any():
            missing = values[tokens < 0][:5].tolist()
            raise InputError(f"{int((tokens < 0).sum())} genes of gene_list are not in the vocabulary, "
                             f"e.g. {missing}; give Ensembl IDs or token ids.")
    uniq, n = np.unique(tokens, return_counts=True)
    if (n > 1).any():
        raise InputError(f"gene_list repeats genes: token ids {uniq[n > 1][:5].tolist()}.")
    return tokens
