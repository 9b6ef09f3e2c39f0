"""Data networks (|Pearson r|, |Spearman rho|) of an h5ad file too large for memory, in memory O(genes² + chunk).

The in-memory path (`networks.from_data` on `NetworkContext.log_expression`) holds a dense cells × genes matrix:
1.6 GB in float64 at 100k cells × 2,000 genes. Here the same network comes from passes over chunks of cells
(`data.input.backed`: each chunk mapped as `prepare` maps the file), with the same cells, genes and normalisation:

- pass 1: which cells have counts and in how many cells each gene is expressed (`gene_sets.expressed_candidates`);
- pass 2 (gene keywords 'hvg', 'hvg+tfs', 'most_expressed'): the genes' moments (`gene_sets.GeneMoments`), which
  the one owner of gene-set choice ranks;
- Pearson: sums and cross-products of the chunks' log-normalised values in float64 (`CorrelationSums`);
- Spearman, exact: a gene's ranks need its whole column. The network genes' nonzero values (float32, as the
  in-memory path casts them) go to a scratch store on disk as they stream, partitioned into blocks of genes (as
  many genes as `RANK_BUDGET` nonzero values allow, sized by pass 1's counts); each block is then read back whole
  and ranked with ties averaged. A zero's
  rank is the same for every cell of a gene, so each rank less that zero rank is again sparse, with the data's
  own pattern; Pearson is blind to that shift, so the Spearman network is `CorrelationSums` over the shifted ranks
  read back chunk by chunk. The store costs 20 bytes per nonzero value on disk (value, gene, rank, CSR index).

Fault handling: the scratch store is a ``.part`` directory beside the output (or in the system's temporary
directory); an error removes it, and a run that finds one left by a killed run says so and starts clean.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import dsyrk
from tqdm.auto import tqdm

from grnformer.bundle.checkpoint import Bundle
from grnformer.data.input.backed import BackedCells, h5ad_shape, is_h5ad
from grnformer.data.input.expression import log_per_10k
from grnformer.inference.gene_sets import (
    GeneMoments,
    expressed_candidates,
    genes_from_moments,
    select_genes,
)
from grnformer.inference.prepared import Prepared, prepare_input
from grnformer.networks.methods import get_method

STREAM_ABOVE_BYTES = 2 ** 30  # the in-memory path's dense float64 cells × genes matrix above which grn streams
CHUNK_CELLS = 4_096
RANK_BUDGET = 10_000_000  # nonzero values ranked at once (a gene block): ~0.8 GB of working arrays


def streams(path: object, method: str, genes: Sequence[str] | str, n_genes: int | None, grouped: bool) -> bool:
    """Whether `grn` should stream ``path``: a data network of an h5ad file whose dense cells × genes float64
    matrix would pass `STREAM_ABOVE_BYTES` (one network of all cells; groups run in memory). Only a method that
    is a correlation of the cells streams (its ``correlation`` trait)."""
    if grouped or get_method(method).correlation is None or not isinstance(path, (str, Path)) or not is_h5ad(path):
        return False
    n_network = len(genes) if not isinstance(genes, str) else (n_genes or 0)
    return h5ad_shape(path)[0] * n_network * 8 > STREAM_ABOVE_BYTES


class CorrelationSums:
    """Cell count, per-gene sums and the genes' cross-products in float64, added chunk by chunk: what Pearson r
    needs, in O(genes²) whatever the number of cells."""

    def __init__(self, n_genes: int):
        self.n = 0
        self.sum = np.zeros(n_genes)
        self.cross = np.zeros((n_genes, n_genes), order="F")  # upper triangle filled by dsyrk

    def add(self, x: np.ndarray | sp.spmatrix) -> None:
        x = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
        if not len(x):
            return
        self.n += len(x)
        self.sum += x.sum(0)
        self.cross = dsyrk(1.0, x, beta=1.0, c=self.cross, trans=1, overwrite_c=1)

    def abs_r(self) -> np.ndarray:
        """[G, G] |Pearson r| (constant genes score 0), as `from_data.abs_correlation` of the same cells."""
        upper = np.triu(self.cross)
        cov = upper + np.triu(upper, 1).T - np.outer(self.sum, self.sum) / max(self.n, 1)
        norm = np.sqrt(np.maximum(np.diag(cov), 0))
        scale = np.where(norm > 0, norm, np.inf)
        return np.abs(cov / scale[:, None] / scale[None, :]).astype(np.float32)


@dataclass
class StreamedCells:
    """The cells of a file a streamed network reads: the file, which file rows `prepare` keeps (prepared row i is
    file row ``kept_rows[i]``), and how to chunk. `NetworkContext.correlation` calls `abs_correlation`."""

    cells: BackedCells
    kept_rows: np.ndarray
    chunk_cells: int = CHUNK_CELLS
    rank_budget: int = RANK_BUDGET
    scratch: Path | None = None  # where the Spearman store goes (a temporary directory when None)
    progress: bool = True
    passes: list[str] = field(default_factory=list)  # what ran, for the record
    n_expressed: np.ndarray | None = None  # cells expressing each prepared gene (sizes the Spearman gene blocks)

    def log_chunks(self, rows: np.ndarray, cols: np.ndarray, desc: str):
        """Each chunk's [cells, G] log1p(counts per 10,000) of the genes ``cols`` (float32, depth over all genes,
        as `NetworkContext.log_expression`) for the prepared ``rows``."""
        wanted = np.zeros(self.cells.n_rows, dtype=bool)
        wanted[self.kept_rows[rows]] = True
        self.passes.append(desc)
        for start, counts, keep in self.cells.chunks(self.chunk_cells, self.progress, desc):
            mine = wanted[start:start + len(keep)][keep]
            if mine.any():
                yield sp.csr_matrix(log_per_10k(counts[mine])[:, cols], dtype=np.float32)

    def abs_correlation(self, kind: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """[G, G] |Pearson r| ('pearson') or |Spearman rho| ('spearman') of the prepared ``rows`` × ``cols``."""
        sums = CorrelationSums(len(cols))
        if kind == "pearson":
            for x in self.log_chunks(rows, cols, "pearson: cells"):
                sums.add(x)
            return sums.abs_r()
        per_gene = self.n_expressed[cols] if self.n_expressed is not None else np.full(len(cols), len(rows))
        with scratch_dir(self.scratch) as where:
            store = RankStore(where, len(cols), gene_blocks(per_gene, self.rank_budget))
            try:
                for x in self.log_chunks(rows, cols, "spearman 1/3: values"):
                    store.append(x)
                store.rank(self.progress)
                for x in tqdm(store.read(), total=len(store.chunks), desc="spearman 3/3: rank products",
                              disable=not self.progress):
                    sums.add(x)
            finally:
                store.close()
        return sums.abs_r()


class RankStore:
    """The network genes' nonzero values of every cell on disk, partitioned by blocks of genes as they arrive (one
    file per block, chunk after chunk), ranked a block at a time (`rank`), read back per chunk as the cells' ranks
    less each gene's zero rank (`read`). Each value is written, read and ranked once: time linear in the values.

    Read and written with pread/pwrite, not memory maps: mapped file pages count as the process's resident memory
    and would grow with the store (the corpus reader's lesson, docs/ARCHITECTURE.md)."""

    def __init__(self, where: Path, n_genes: int, blocks: Sequence[tuple[int, int]]):
        self.where, self.n_genes, self.n_blocks = where, n_genes, len(blocks)
        self.block_of = np.zeros(n_genes, dtype=np.int64)
        for i, (lo, hi) in enumerate(blocks):
            self.block_of[lo:hi] = i
        self.chunks: list[tuple[int, int, np.ndarray]] = []  # (nonzero offset, rows, values per block) per chunk
        self.n_cells = self.nnz = 0
        self.block_nnz = np.zeros(self.n_blocks, dtype=np.int64)
        names = ["indices", "indptr"] + [f"{kind}{i}" for i in range(self.n_blocks) for kind in ("values", "ranks")]
        self._fd = {name: os.open(where / f"{name}.bin", os.O_RDWR | os.O_CREAT) for name in names}

    def _write(self, name: str, values: np.ndarray, offset: int) -> None:
        os.pwrite(self._fd[name], values.tobytes(), offset * values.itemsize)

    def _read(self, name: str, dtype: type, offset: int, n: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize
        return np.frombuffer(os.pread(self._fd[name], n * size, offset * size), dtype=dtype).copy()

    def _by_block(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(order that groups a chunk's entries by block, keeping their order within a block; entries per block)."""
        block = self.block_of[indices]
        return np.argsort(block, kind="stable"), np.bincount(block, minlength=self.n_blocks)

    def append(self, x: sp.csr_matrix) -> None:
        self._write("indices", np.ascontiguousarray(x.indices, dtype=np.int32), self.nnz)
        self._write("indptr", np.ascontiguousarray(x.indptr, dtype=np.int64), self.n_cells + len(self.chunks))
        order, per_block = self._by_block(x.indices)
        values = np.ascontiguousarray(x.data[order], dtype=np.float32)
        genes = x.indices[order].astype(np.float32)  # exact below 2**24 genes: one file per block holds both
        start = 0
        for i, n in enumerate(per_block):
            if n:
                both = np.stack([values[start:start + n], genes[start:start + n]], axis=1)
                self._write(f"values{i}", both, 2 * int(self.block_nnz[i]))
                start += int(n)
        self.chunks.append((self.nnz, x.shape[0], per_block))
        self.block_nnz += per_block
        self.nnz += x.nnz
        self.n_cells += x.shape[0]

    def rank(self, progress: bool = False) -> None:
        """Each block's values ranked per gene (ties averaged) into its ranks file, in the order they arrived."""
        for i in tqdm(range(self.n_blocks), desc="spearman 2/3: ranks by gene block", disable=not progress):
            both = self._read(f"values{i}", np.float32, 0, 2 * int(self.block_nnz[i])).reshape(-1, 2)
            self._write(f"ranks{i}", shifted_ranks(both[:, 1].astype(np.int64), both[:, 0], self.n_cells), 0)

    def read(self):
        """The shifted ranks, chunk after chunk, as CSR [cells, genes] float64."""
        row, taken = 0, np.zeros(self.n_blocks, dtype=np.int64)
        for i, (off, rows, per_block) in enumerate(self.chunks):
            n = int(per_block.sum())
            indices = self._read("indices", np.int32, off, n)
            order, _ = self._by_block(indices)
            data = np.empty(n)
            data[order] = np.concatenate([np.empty(0)] + [
                self._read(f"ranks{b}", np.float64, int(taken[b]), int(per_block[b]))
                for b in range(self.n_blocks) if per_block[b]])
            taken += per_block
            indptr = self._read("indptr", np.int64, row + i, rows + 1)
            yield sp.csr_matrix((data, indices, indptr), shape=(rows, self.n_genes))
            row += rows

    def close(self) -> None:
        for fd in self._fd.values():
            os.close(fd)


def gene_blocks(per_gene: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive [lo, hi) gene ranges holding at most ``budget`` nonzero values each (a gene alone may pass)."""
    blocks, lo, held = [], 0, 0
    for g, n in enumerate(per_gene):
        if held and held + n > budget:
            blocks.append((lo, g))
            lo, held = g, 0
        held += int(n)
    if lo < len(per_gene):
        blocks.append((lo, len(per_gene)))
    return blocks


def shifted_ranks(genes: np.ndarray, values: np.ndarray, n_cells: int) -> np.ndarray:
    """Per value: its average rank within its gene over all ``n_cells`` cells (the cells without a stored value
    are zeros, ranked first), less the zeros' average rank, so zeros stay 0. Stored zeros count as zeros.

    One sort of an int64 key (gene in the high bits, the float32 value's bits below: for values > 0 the bit
    pattern orders as the value does), three times faster than a two-key lexsort."""
    out = np.zeros(len(values))
    idx = np.flatnonzero(values > 0)
    if not len(idx):
        return out
    key = (genes[idx].astype(np.int64) << 32) | np.ascontiguousarray(values[idx], np.float32).view(np.uint32)
    order = np.argsort(key)
    key = key[order]
    new_run = np.r_[True, key[1:] != key[:-1]]
    gene = key >> 32
    new_gene = np.r_[True, gene[1:] != gene[:-1]]
    gene_start = np.flatnonzero(new_gene)
    seg = np.cumsum(new_gene) - 1
    run_start = np.flatnonzero(new_run)
    run = np.cumsum(new_run) - 1
    first = run_start[run] - gene_start[seg] + 1  # 1-based rank among the gene's nonzero values
    last = np.r_[run_start[1:], len(key)][run] - gene_start[seg]
    n_zero = n_cells - np.diff(np.r_[gene_start, len(key)])[seg]
    out[idx[order]] = (first + last) / 2 + (n_zero - 1) / 2
    return out


class scratch_dir:
    """A scratch directory ``BASE.part`` (or a temporary one), removed on exit; one left by a killed run is
    removed first, with a line saying the run starts clean."""

    def __init__(self, base: Path | None):
        self.base = base

    def __enter__(self) -> Path:
        if self.base is None:
            self.path = Path(tempfile.mkdtemp(prefix="grnformer-ranks-"))
            return self.path
        self.path = self.base.with_name(self.base.name + ".part")
        if self.path.exists():
            print(f"removing '{self.path}', the scratch of an interrupted run: starting clean", file=sys.stderr)
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def streamed_cells(bundle: Bundle, path: str | Path, genes: Sequence[str] | str, n_genes: int | None,
                   organism: str | None = None, chunk_cells: int = CHUNK_CELLS, progress: bool = True
                   ) -> tuple[Prepared, StreamedCells, np.ndarray]:
    """(the first cells prepared, the file's cells to stream, the network genes as prepared columns), from one pass
    over the file (two for a variability or expression keyword). Genes are chosen by the one owner of gene sets
    (`inference.gene_sets`) over every cell with counts, as the in-memory path chooses them."""
    cells = BackedCells.open(path, organism, bundle.vocab)
    head = prepare_input(bundle, cells.head, organism)
    n_vars = cells.head.n_vars
    n_expressed, kept = np.zeros(n_vars, dtype=np.int64), []
    for start, counts, keep in cells.chunks(chunk_cells, progress, "pass 1: cells with counts, genes expressed"):
        n_expressed += np.bincount(counts.indices, minlength=n_vars)
        kept.append(start + np.flatnonzero(keep))
    stream = StreamedCells(cells, np.concatenate(kept), chunk_cells, progress=progress, n_expressed=n_expressed)
    if len(stream.kept_rows) < cells.n_rows:
        warnings.warn(f"dropped {cells.n_rows - len(stream.kept_rows):,} of {cells.n_rows:,} cells with no counts in "
                      f"the {n_vars:,} mapped genes", stacklevel=3)
    if not isinstance(genes, str) or genes not in ("hvg", "hvg+tfs", "most_expressed", "random_expressed"):
        return head, stream, select_genes(head, genes, n_genes)  # a list, or select_genes' own error
    candidates = expressed_candidates(n_expressed, len(stream.kept_rows), n_genes)
    if genes == "random_expressed":
        return head, stream, candidates[np.argsort(-n_expressed[candidates], kind="stable")[:n_genes]]
    moments = GeneMoments(0, *(np.zeros(len(candidates)) for _ in range(3)))
    for _, counts, _ in cells.chunks(chunk_cells, progress, "pass 2: gene variability"):
        moments = moments + GeneMoments.of(counts[:, candidates])
    return head, stream, genes_from_moments(moments, candidates, genes, n_genes,
                                            head.adata.var["symbol"].astype(str).to_numpy(), head.organism)
