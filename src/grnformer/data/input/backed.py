"""Cells of an h5ad file too large for memory, read in chunks of rows, each chunk mapped exactly as `prepare` maps
the whole file (the one owner of the mapping: it is run, never re-written here).

How the mapping is reused: `prepare` sums input columns into vocabulary genes, a linear map of the columns. It
is run once on the file's first cells (organism, count source, genes, the report) and once on an identity matrix
with the same var (each "cell" of it is one input column), which reads that linear map back as a sparse
input-columns × genes matrix. A chunk of raw counts times that matrix, less its cells without counts, is what
`prepare` would have made of those rows. Memory is one chunk plus the file's var (and its obs index, read once).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from anndata.io import read_elem, sparse_dataset
from tqdm.auto import tqdm

from grnformer.data.genes import GeneVocab
from grnformer.data.input.prepare import ORGANISM_COLUMN, MappingReport, prepare
from grnformer.errors import InputError

HEAD_CELLS = 2_000  # cells read to decide organism, count source and gene names (as `prepare` would)
_COUNT_KEYS = {"X": "X", 'layers["counts"]': "layers/counts", 'layers["raw_counts"]': "layers/raw_counts",
               "raw": "raw/X"}


def is_h5ad(path: str | Path) -> bool:
    """Whether ``path`` is an h5ad file (HDF5 with an X and a var), whatever its suffix."""
    try:
        with h5py.File(path, "r") as f:
            return "X" in f and "var" in f and "obs" in f
    except (OSError, TypeError):
        return False


def h5ad_shape(path: str | Path) -> tuple[int, int]:
    """(cells, genes) of an h5ad file, read from its metadata only."""
    with h5py.File(path, "r") as f:
        x = f["X"]
        shape = x.attrs["shape"] if isinstance(x, h5py.Group) else x.shape
        return int(shape[0]), int(shape[1])


@dataclass
class BackedCells:
    """An h5ad file's cells as `prepare` maps them, read chunk by chunk (`chunks`)."""

    path: Path
    head: AnnData          # the first cells, prepared: var, organism and report as the whole file's
    report: MappingReport  # of the first cells (cell counts in it are theirs, not the file's)
    key: str               # HDF5 path of the raw counts: X, layers/counts, layers/raw_counts or raw/X
    merge: sp.csr_matrix   # input columns × prepared genes: the sum `prepare` applies
    n_rows: int            # cells in the file
    gene_of: np.ndarray | None = None  # prepared gene of each input column (-1: none); None when genes sum columns

    @classmethod
    def open(cls, path: str | Path, organism: str | None = None, vocab: GeneVocab | None = None) -> BackedCells:
        """Read the file's metadata and first cells; InputError for what `prepare` would refuse, or for counts it
        could only rebuild from normalised values (streaming needs raw counts in X, a counts layer or raw)."""
        path = Path(path)
        vocab = GeneVocab.default() if vocab is None else vocab
        n_rows, _ = h5ad_shape(path)
        with h5py.File(path, "r") as f:
            obs = _head_obs(f["obs"], min(HEAD_CELLS, n_rows))
            var = read_elem(f["var"])
            layers = {k: _read_rows(path, f, f"layers/{k}", 0, len(obs)) for k in ("counts", "raw_counts")
                      if f"layers/{k}" in f}
            raw = None
            if "raw" in f and "raw/X" in f:
                raw = AnnData(_read_rows(path, f, "raw/X", 0, len(obs)), obs=obs, var=read_elem(f["raw/var"]))
            head = AnnData(_read_rows(path, f, "X", 0, len(obs)), obs=obs, var=var, layers=layers)
        if raw is not None:
            head.raw = raw
        with warnings.catch_warnings():  # cells without counts are counted over the whole file by the caller
            warnings.filterwarnings("ignore", message="dropped .* cells with no counts")
            prepared, report = prepare(head, organism=organism, vocab=vocab)
        if report.count_source not in _COUNT_KEYS:
            raise InputError(f"{path}: streaming reads raw counts from X, a counts layer or raw; this file's counts "
                             f"come from {report.count_source}.")
        used = raw.var if report.count_source == "raw" else var
        merge = _column_map(used, head.obs.get(ORGANISM_COLUMN), organism, vocab, prepared.n_vars)
        return cls(path, prepared, report, _COUNT_KEYS[report.count_source], merge, n_rows, _genes_of(merge))

    def chunks(self, chunk_cells: int, progress: bool = False, desc: str = "cells"
               ) -> Iterator[tuple[int, sp.csr_matrix, np.ndarray]]:
        """(first file row, prepared counts of the chunk's cells that have counts, which of its rows those are),
        chunk after chunk. A chunk that cannot be read is an InputError naming the file and its rows."""
        with h5py.File(self.path, "r") as f, tqdm(total=self.n_rows, unit="cell", desc=desc,
                                                   disable=not progress) as bar:
            for start in range(0, self.n_rows, chunk_cells):
                stop = min(start + chunk_cells, self.n_rows)
                counts = self._mapped(sp.csr_matrix(_read_rows(self.path, f, self.key, start, stop),
                                                    dtype=np.float32))
                keep = np.asarray(counts.sum(axis=1, dtype=np.float64)).ravel() > 0
                counts = counts[keep]
                counts.sort_indices()
                yield start, counts, keep
                bar.update(stop - start)


    def _mapped(self, x: sp.csr_matrix) -> sp.csr_matrix:
        """``x @ merge``; when no two input columns share a gene (the usual case) the same matrix by renaming
        column indices, without the sparse product (a tenth of the time)."""
        if self.gene_of is None:
            return (x @ self.merge).tocsr()
        gene = self.gene_of[x.indices]
        keep = gene >= 0
        rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))[keep]
        indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=x.shape[0]))]
        out = sp.csr_matrix((x.data[keep], gene[keep], indptr), shape=(x.shape[0], self.merge.shape[1]))
        out.sort_indices()
        return out


def _genes_of(merge: sp.csr_matrix) -> np.ndarray | None:
    """Prepared gene of each input column (-1: none), or None when some gene sums several columns."""
    if np.any(np.diff(merge.tocsc().indptr) > 1):
        return None
    gene = np.full(merge.shape[0], -1, dtype=np.int32)
    coo = merge.tocoo()
    gene[coo.row] = coo.col
    return gene


def _head_obs(group: h5py.Group, n: int) -> pd.DataFrame:
    """The first ``n`` rows of an h5ad obs without reading the others (an atlas's obs is large): plain arrays
    and categorical columns are sliced; other encodings are read whole, then cut."""
    index_key = group.attrs.get("_index", "_index")
    columns = {}
    for name in group.attrs.get("column-order", []):
        elem = group[name]
        if isinstance(elem, h5py.Dataset):
            columns[name] = read_elem(elem) if elem.ndim == 0 else _decoded(elem[:n])
        elif elem.attrs.get("encoding-type") == "categorical":
            categories = read_elem(elem["categories"])
            columns[name] = pd.Categorical.from_codes(elem["codes"][:n], categories,
                                                      ordered=bool(elem.attrs.get("ordered", False)))
        else:
            columns[name] = np.asarray(read_elem(elem))[:n]
    return pd.DataFrame(columns, index=pd.Index(_decoded(group[index_key][:n])))


def _decoded(values: np.ndarray) -> np.ndarray:
    return values.astype(str) if values.dtype.kind in "OS" else values


def _read_rows(path: Path, f: h5py.File, key: str, start: int, stop: int) -> sp.csr_matrix:
    """Rows [start, stop) of the matrix at ``key`` (sparse or dense) as CSR."""
    try:
        elem = f[key]
        rows = sparse_dataset(elem)[start:stop] if isinstance(elem, h5py.Group) else elem[start:stop]
        return sp.csr_matrix(rows)
    except Exception as err:  # h5py and anndata raise many types for a damaged file
        raise InputError(f"could not read cells {start:,}-{stop:,} of '{path}' ({key}): {type(err).__name__}: "
                         f"{err}. The file may be truncated or damaged; nothing was written.") from err


def _column_map(var: pd.DataFrame, organism_obs: pd.Series | None, organism: str | None, vocab: GeneVocab,
                n_genes: int) -> sp.csr_matrix:
    """The input-columns × prepared-genes matrix `prepare` sums columns with, read back by preparing an identity
    matrix (one 'cell' per input column; the columns that map nowhere come back as dropped cells)."""
    n = len(var)
    eye = AnnData(sp.identity(n, dtype=np.float32, format="csr"), var=var,
                  obs=pd.DataFrame(index=pd.Index(np.arange(n).astype(str))))
    if organism_obs is not None and len(organism_obs):
        eye.obs[ORGANISM_COLUMN] = str(organism_obs.iloc[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the columns that map nowhere are 'cells without counts'
        mapped, _ = prepare(eye, organism=organism, vocab=vocab)
    if mapped.n_vars != n_genes:
        raise RuntimeError("the identity matrix mapped to other genes than the file's first cells")
    coo = mapped.X.tocoo()
    rows = mapped.obs_names.astype(int).to_numpy()[coo.row]
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, coo.col)), shape=(n, n_genes))
