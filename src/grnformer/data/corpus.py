"""The on-disk training corpus: many AnnData sources → one sharded CSR store, read back as CellRecords.

Layout of a corpus directory (format 1)::

    manifest.json            vocabulary hash, label set, sources, shards, versions
    genes.parquet            the vocabulary the token ids refer to (gene_id, symbol, organism, position)
    cells.parquet            one row per cell: cell, dataset, obs_name, shard, row, organism, n_counts,
                             n_genes, label_<class> codes
    shards/NNNNN.indptr.npy  int64 [n_cells + 1]
    shards/NNNNN.indices.npy token ids (uint16 while the vocabulary fits, else int32)
    shards/NNNNN.data.npy    float32 raw counts

Shards are plain .npy files so a reader fetches only the bytes of the cells it asks for; they are written
by appending chunk after chunk (the header is rewritten at the end), so building never holds more than one chunk
of one source in memory. The whole directory is written as ``<out_dir>.part`` and renamed when complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import anndata
from importlib.metadata import version as _version
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
import torch
from anndata import AnnData

import grnformer
from grnformer.atomic import atomic_path
from grnformer.data import datasets
from grnformer.data.collate import CellRecord
from grnformer.data.genes import GeneVocab, organism_id
from grnformer.data.labels import LabelSet
from grnformer.data.prepare import ORGANISM_COLUMN, prepare
from grnformer.errors import InputError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CELLS = "cells.parquet"
GENES = "genes.parquet"
SHARDS = "shards"

Source = str | Path | AnnData


def vocab_hash(vocab: GeneVocab) -> str:
    """Identity of a vocabulary's token mapping (gene IDs and organisms in token order)."""
    h = hashlib.sha256()
    h.update("\n".join(vocab.ids.astype(str)).encode())
    h.update("\n".join(vocab.table["organism"].astype(str)).encode())
    return h.hexdigest()


def _index_dtype(vocab: GeneVocab) -> np.dtype:
    return np.dtype(np.uint16) if len(vocab) <= 1 << 16 else np.dtype(np.int32)


def _label_classes(label_set: LabelSet | None) -> list[str]:
    return [] if label_set is None else list(label_set.classes)


def _encode_labels(label_set: LabelSet | None, obs: pd.DataFrame) -> np.ndarray:
    if label_set is None:
        return np.zeros((len(obs), 0), dtype=np.int64)
    return np.asarray(label_set.encode(obs), dtype=np.int64)


# ----------------------------------------------------------------------------------------------------- writing


class _NpyAppender:
    """A 1-D .npy file grown by appending; the header (fixed 128 bytes for 1-D) is rewritten on close."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path, self.dtype, self.n = path, np.dtype(dtype), 0
        self.f = open(path, "wb")
        self.header_len = self._write_header(0)

    def _write_header(self, n: int) -> int:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            buf, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (n,)})
        self.f.write(buf.getvalue())
        return len(buf.getvalue())

    def append(self, values: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(values, dtype=self.dtype).tobytes())
        self.n += len(values)

    def close(self) -> None:
        self.f.seek(0)
        if self._write_header(self.n) != self.header_len:  # would only happen for > 10^40 elements
            raise RuntimeError(f"npy header of {self.path} changed size")
        self.f.close()


class _ShardWriter:
    """Rolls CSR chunks into shards of at most ``shard_size`` cells."""

    def __init__(self, root: Path, shard_size: int, index_dtype: np.dtype) -> None:
        self.root, self.shard_size, self.index_dtype = root, shard_size, index_dtype
        self.shards: list[dict] = []
        self._files: tuple[_NpyAppender, _NpyAppender, _NpyAppender] | None = None
        self._rows = self._nnz = 0

    def _open(self) -> None:
        name = f"{len(self.shards):05d}"
        base = self.root / SHARDS
        self._files = (_NpyAppender(base / f"{name}.indptr.npy", np.int64),
                       _NpyAppender(base / f"{name}.indices.npy", self.index_dtype),
                       _NpyAppender(base / f"{name}.data.npy", np.float32))
        self._files[0].append(np.zeros(1, dtype=np.int64))
        self.shards.append({"name": name, "n_cells": 0, "nnz": 0})
        self._rows = self._nnz = 0

    def _close(self) -> None:
        if self._files is not None:
            for f in self._files:
                f.close()
            self.shards[-1].update(n_cells=self._rows, nnz=self._nnz)
            self._files = None

    def write(self, tokens: np.ndarray, counts: np.ndarray, indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append cells (CSR pieces with token ids); returns each cell's (shard, row)."""
        n = len(indptr) - 1
        shard = np.empty(n, dtype=np.int32)
        row = np.empty(n, dtype=np.int32)
        done = 0
        while done < n:
            if self._files is None or self._rows == self.shard_size:
                self._close()
                self._open()
            take = min(n - done, self.shard_size - self._rows)
            lo, hi = indptr[done], indptr[done + take]
            indptr_f, indices_f, data_f = self._files
            indptr_f.append(indptr[done + 1:done + take + 1] - lo + self._nnz)
            indices_f.append(tokens[lo:hi])
            data_f.append(counts[lo:hi])
            shard[done:done + take] = len(self.shards) - 1
            row[done:done + take] = np.arange(self._rows, self._rows + take)
            self._rows += take
            self._nnz += int(hi - lo)
            done += take
        return shard, row

    def finish(self) -> list[dict]:
        self._close()
        return self.shards


def _source_items(sources: Iterable[Source] | Mapping[str, Source]) -> Iterator[tuple[str, Source]]:
    """(dataset name, source) pairs; names come from the mapping keys, file stems, or dataset names."""
    if isinstance(sources, Mapping):
        yield from ((str(k), v) for k, v in sources.items())
        return
    if isinstance(sources, (str, Path, AnnData)):
        sources = [sources]
    for i, src in enumerate(sources):
        if isinstance(src, AnnData):
            yield str(src.uns.get("grnformer_dataset", f"anndata_{i}")), src
        else:
            path = Path(src)
            yield (path.stem if path.suffix == ".h5ad" or path.exists() else str(src)), src


def _chunks(src: Source, chunk_cells: int) -> Iterator[AnnData]:
    """The source as raw AnnData pieces of at most ``chunk_cells`` cells; h5ad files are read backed."""
    if isinstance(src, AnnData):
        for lo in range(0, src.n_obs, chunk_cells):
            yield src[lo:lo + chunk_cells] if src.n_obs > chunk_cells else src
        return
    path = Path(src)
    if not path.exists():
        if path.suffix == ".h5ad" or os.sep in str(src):
            raise InputError(f"corpus source '{src}' does not exist.")
        yield datasets.load(str(src))  # a named dataset (small: read whole)
        return
    try:
        backed = anndata.read_h5ad(path, backed="r")
    except Exception as err:  # h5py/anndata raise many types for broken files
        raise InputError(f"could not read '{path}' as an h5ad file ({type(err).__name__}: {err}).") from err
    try:
        for lo in range(0, backed.n_obs, chunk_cells):
            yield backed[lo:lo + chunk_cells].to_memory()
    finally:
        backed.file.close()


@dataclass
class _SourceTally:
    name: str
    source: str
    organisms: set
    n_cells_in: int = 0
    n_cells: int = 0
    n_zero_cells_dropped: int = 0
    n_genes_mapped: int = 0
    count_source: str = ""
    gene_source: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "organisms": sorted(self.organisms),
                "n_cells_in": self.n_cells_in, "n_cells": self.n_cells,
                "n_zero_cells_dropped": self.n_zero_cells_dropped, "n_genes_mapped": self.n_genes_mapped,
                "count_source": self.count_source, "gene_source": self.gene_source}


def build_corpus(sources: Iterable[Source] | Mapping[str, Source], out_dir: str | Path,
                 vocab: GeneVocab | None = None, label_set: LabelSet | None = None, shard_size: int = 100_000,
                 chunk_cells: int = 20_000, organism: str | None = None, overwrite: bool = False) -> "Corpus":
    """Write a sharded corpus from AnnData objects, h5ad paths or named datasets, one chunk at a time.

    Each chunk goes through `prepare` (validation, gene mapping, zero-cell removal), so sources may be raw or
    already prepared; ``organism`` is passed on for sources that do not say theirs. Sources may be a generator
    (only one is held at a time). Label codes come from ``label_set.encode(obs)``; without a label set the
    corpus has no label columns. Returns the opened `Corpus`.
    """
    vocab = GeneVocab.default() if vocab is None else vocab
    if shard_size < 1 or chunk_cells < 1:
        raise InputError(f"shard_size and chunk_cells must be positive, got {shard_size} and {chunk_cells}.")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise InputError(f"corpus directory '{out}' already exists: choose another or pass overwrite=True.")
    with atomic_path(out) as part:  # the whole directory: a crash leaves no half corpus
        (part / SHARDS).mkdir(parents=True)
        classes = _label_classes(label_set)
        schema = pa.schema([("cell", pa.int64()), ("dataset", pa.string()), ("obs_name", pa.string()),
                            ("shard", pa.int32()), ("row", pa.int32()), ("organism", pa.string()),
                            ("n_counts", pa.float32()), ("n_genes", pa.int32())]
                           + [(f"label_{c}", pa.int32()) for c in classes])
        shards = _ShardWriter(part, shard_size, _index_dtype(vocab))
        tallies: list[_SourceTally] = []
        n_total = 0
        try:
            with pq.ParquetWriter(part / CELLS, schema) as cells_writer:
                for name, src in _source_items(sources):
                    tally = _SourceTally(name, "AnnData" if isinstance(src, AnnData) else str(src), set())
                    for chunk in _chunks(src, chunk_cells):
                        prepared, report = prepare(chunk, organism=organism, vocab=vocab)
                        table = _write_chunk(prepared, vocab, label_set, classes, name, shards, n_total)
                        cells_writer.write_table(table)
                        n_total += prepared.n_obs
                        tally.organisms.add(report.organism)
                        tally.n_cells_in += report.n_cells_in
                        tally.n_cells += report.n_cells_kept
                        tally.n_zero_cells_dropped += report.n_zero_cells_dropped
                        tally.n_genes_mapped = max(tally.n_genes_mapped, report.n_genes_mapped)
                        tally.count_source, tally.gene_source = report.count_source, report.gene_source
                    tallies.append(tally)
            if n_total == 0:
                raise InputError("the corpus sources hold no cells.")
            _write_genes(part / GENES, vocab)
            manifest = {
                "format": FORMAT_VERSION,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "n_cells": n_total,
                "vocab_hash": vocab_hash(vocab),
                "vocab_size": len(vocab),
                "index_dtype": _index_dtype(vocab).str,
                "label_classes": classes,
                "label_set": None if label_set is None else label_set.to_dict(),
                "sources": [t.to_dict() for t in tallies],
                "shards": shards.finish(),
                "versions": {"grnformer": grnformer.__version__, "numpy": np.__version__,
                             "anndata": _version("anndata"), "pyarrow": pa.__version__},
            }
            (part / MANIFEST).write_text(json.dumps(manifest, indent=1))
        except BaseException:
            shards.finish()
            raise
    return Corpus(out)


def _write_chunk(prepared: AnnData, vocab: GeneVocab, label_set: LabelSet | None, classes: list[str], name: str,
                 shards: _ShardWriter, first_cell: int) -> pa.Table:
    """Append one prepared chunk to the shards; its rows of the cell table."""
    x = sp.csr_matrix(prepared.X, dtype=np.float32)
    x.eliminate_zeros()
    tokens = vocab.index(prepared.var_names)[x.indices]  # prepared genes are all in the vocabulary
    shard, row = shards.write(tokens, x.data, x.indptr.astype(np.int64))
    n = prepared.n_obs
    columns = {
        "cell": pa.array(np.arange(first_cell, first_cell + n, dtype=np.int64)),
        "dataset": pa.array([name] * n, pa.string()),
        "obs_name": pa.array(prepared.obs_names.astype(str), pa.string()),
        "shard": pa.array(shard),
        "row": pa.array(row),
        "organism": pa.array(prepared.obs[ORGANISM_COLUMN].astype(str).to_numpy(), pa.string()),
        "n_counts": pa.array(np.asarray(x.sum(axis=1)).ravel().astype(np.float32)),
        "n_genes": pa.array(np.diff(x.indptr).astype(np.int32)),
    }
    codes = _encode_labels(label_set, prepared.obs)
    for j, c in enumerate(classes):
        columns[f"label_{c}"] = pa.array(codes[:, j].astype(np.int32))
    return pa.table(columns)


def _write_genes(path: Path, vocab: GeneVocab) -> None:
    table = pd.DataFrame({"gene_id": vocab.ids.astype(str), "symbol": vocab.symbols.astype(str),
                          "organism": vocab.table["organism"].astype(str).to_numpy(),
                          "position": vocab.positions})
    table.to_parquet(path, index=False)


# ----------------------------------------------------------------------------------------------------- reading


class _ArrayFile:
    """Slices of a 1-D .npy file read with pread: random access to a few KB per cell without mapping the file,
    so resident memory does not fill with file pages (fault-around and read-ahead) as a large corpus is sampled."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "rb", buffering=0)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(self.file)]
        _, _, self.dtype = read_header(self.file)
        self.offset = self.file.tell()

    def read(self, lo: int, hi: int) -> np.ndarray:
        size = self.dtype.itemsize
        return np.frombuffer(os.pread(self.file.fileno(), (hi - lo) * size, self.offset + lo * size), self.dtype)


class CellDataset(torch.utils.data.Dataset):
    """Map-style dataset of CellRecords with per-cell metadata (``obs``) and ``label_codes`` [n_cells, k]."""

    label_classes: list[str]

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> CellRecord:
        raise NotImplementedError

    def __getitems__(self, indices: list[int]) -> list[CellRecord]:
        """Batched fetch used by DataLoader (one call per batch instead of one per cell)."""
        return [self[i] for i in indices]


class Corpus(CellDataset):
    """A corpus written by `build_corpus`; shard files are opened lazily in each process (DataLoader workers)."""

    def __init__(self, path: str | Path, vocab: GeneVocab | None = None) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise InputError(f"'{self.path}' is not a grnformer corpus (no {MANIFEST}); build one with "
                             "build_corpus or `grnformer corpus`.")
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest.get("format") != FORMAT_VERSION:
            raise InputError(f"corpus '{self.path}' has format {self.manifest.get('format')}, this grnformer "
                             f"reads format {FORMAT_VERSION}: rebuild it.")
        if vocab is not None and vocab_hash(vocab) != self.manifest["vocab_hash"]:
            raise InputError(f"corpus '{self.path}' was built with another gene vocabulary than the one given "
                             "(token ids would not match): rebuild it or use its own vocabulary (Corpus.vocab).")
        self.label_classes = list(self.manifest["label_classes"])
        self.index_dtype = np.dtype(self.manifest["index_dtype"])
        sizes = np.array([s["n_cells"] for s in self.manifest["shards"]], dtype=np.int64)
        self.shard_starts = np.concatenate([[0], np.cumsum(sizes)])
        self.n_cells = int(self.manifest["n_cells"])
        # one column at a time: start-up memory stays near the size of the arrays kept (atlas-size corpora)
        organism = pq.read_table(self.path / CELLS, columns=["organism"],
                                 read_dictionary=["organism"]).column("organism").unify_dictionaries()
        self.organisms = [str(o) for o in organism.chunk(0).dictionary.to_pylist()] if organism.num_chunks else []
        self.organism_codes = np.concatenate([c.indices.to_numpy() for c in organism.chunks]).astype(np.int16)
        del organism
        self.label_codes = np.empty((self.n_cells, len(self.label_classes)), dtype=np.int32)
        for j, c in enumerate(self.label_classes):
            self.label_codes[:, j] = pq.read_table(self.path / CELLS, columns=[f"label_{c}"]).column(0).to_numpy()
        self._obs: pd.DataFrame | None = None
        self._shards: list | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_shards"], state["_pid"] = None, None  # each worker opens the files itself
        return state

    @property
    def obs(self) -> pd.DataFrame:
        """The cell table (cell, dataset, obs_name, shard, row, organism, n_counts, n_genes, label_*)."""
        if self._obs is None:
            self._obs = pq.read_table(self.path / CELLS, read_dictionary=["dataset", "organism"]).to_pandas()
        return self._obs

    @property
    def label_set(self) -> LabelSet | None:
        """The label encoders the codes refer to (None when built without labels)."""
        d = self.manifest["label_set"]
        return None if d is None else LabelSet.from_dict(d)

    @property
    def vocab(self) -> GeneVocab:
        """The vocabulary the corpus token ids refer to."""
        genes = pd.read_parquet(self.path / GENES)
        return GeneVocab(genes.set_index("gene_id")[["symbol", "organism", "position"]])

    def _open(self) -> list[tuple[np.ndarray, _ArrayFile, _ArrayFile]]:
        if self._shards is None or self._pid != os.getpid():
            base = self.path / SHARDS
            self._shards = [(np.load(base / f"{s['name']}.indptr.npy", mmap_mode="r"),
                             _ArrayFile(base / f"{s['name']}.indices.npy"),
                             _ArrayFile(base / f"{s['name']}.data.npy"))
                            for s in self.manifest["shards"]]
            self._pid = os.getpid()
        return self._shards

    def __len__(self) -> int:
        return self.n_cells

    def __getitem__(self, i: int) -> CellRecord:
        i = int(i)
        if not -self.n_cells <= i < self.n_cells:
            raise IndexError(f"cell {i} out of range for a corpus of {self.n_cells} cells")
        i %= self.n_cells
        s = int(np.searchsorted(self.shard_starts, i, side="right")) - 1
        indptr, indices, data = self._open()[s]
        row = i - int(self.shard_starts[s])
        lo, hi = int(indptr[row]), int(indptr[row + 1])
        return CellRecord(genes=indices.read(lo, hi).astype(np.int64), counts=data.read(lo, hi).copy(),
                          labels=self.label_codes[i].astype(np.int64),
                          organism=self.organisms[self.organism_codes[i]])


class AnnDataCells(CellDataset):
    """CellRecords of an in-memory prepared AnnData (``prepare`` output), for inference on a user's data."""

    def __init__(self, adata: AnnData, vocab: GeneVocab | None = None, label_set: LabelSet | None = None) -> None:
        vocab = GeneVocab.default() if vocab is None else vocab
        tokens = vocab.index(adata.var_names)
        if (tokens < 0).any():
            raise InputError(f"{int((tokens < 0).sum())} genes of the AnnData are not vocabulary Ensembl IDs "
                             f"(e.g. {list(adata.var_names[tokens < 0][:5])}): run grnformer.data.prepare first.")
        if ORGANISM_COLUMN not in adata.obs:
            raise InputError(f"the AnnData has no obs['{ORGANISM_COLUMN}']: run grnformer.data.prepare first.")
        x = sp.csr_matrix(adata.X, dtype=np.float32)
        x = sp.csr_matrix((x.data, tokens[x.indices], x.indptr), shape=(adata.n_obs, len(vocab)))
        x.sum_duplicates()  # sorts token ids within each cell and merges repeated genes
        x.eliminate_zeros()
        self.x = x
        self.obs = adata.obs
        self.label_classes = _label_classes(label_set)
        self.label_codes = _encode_labels(label_set, adata.obs)
        names, self._organism_codes = np.unique(adata.obs[ORGANISM_COLUMN].astype(str).to_numpy(),
                                                return_inverse=True)
        self._organisms = [organism_id(o) for o in names]

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> CellRecord:
        lo, hi = int(self.x.indptr[i]), int(self.x.indptr[i + 1])
        return CellRecord(genes=self.x.indices[lo:hi].astype(np.int64), counts=self.x.data[lo:hi].copy(),
                          labels=self.label_codes[i].copy(),
                          organism=self._organisms[self._organism_codes[i]])
