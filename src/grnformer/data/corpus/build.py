"""Writing the on-disk training corpus (layout in `data.corpus.store`): many AnnData sources → one sharded CSR store.

Shards are written by appending chunk after chunk (the .npy header is rewritten at the end), so building never
holds more than one chunk of one source in memory. The whole directory is written as ``<out_dir>.part`` and
renamed when complete.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version as _version
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import anndata
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from anndata import AnnData

import grnformer
from grnformer.atomic import atomic_path
from grnformer.data.corpus import datasets
from grnformer.data.corpus.labels import LabelSet
from grnformer.data.corpus.store import (
    CELLS,
    FORMAT_VERSION,
    GENES,
    MANIFEST,
    SHARDS,
    Corpus,
    encode_labels,
    label_classes,
    vocab_hash,
)
from grnformer.data.genes import GeneVocab
from grnformer.data.input.prepare import ORGANISM_COLUMN, prepare
from grnformer.errors import InputError

Source = str | Path | AnnData


def _index_dtype(vocab: GeneVocab) -> np.dtype:
    return np.dtype(np.uint16) if len(vocab) <= 1 << 16 else np.dtype(np.int32)


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
                 chunk_cells: int = 20_000, organism: str | None = None, overwrite: bool = False) -> Corpus:
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
        classes = label_classes(label_set)
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
    codes = encode_labels(label_set, prepared.obs)
    for j, c in enumerate(classes):
        columns[f"label_{c}"] = pa.array(codes[:, j].astype(np.int32))
    return pa.table(columns)


def _write_genes(path: Path, vocab: GeneVocab) -> None:
    table = pd.DataFrame({"gene_id": vocab.ids.astype(str), "symbol": vocab.symbols.astype(str),
                          "organism": vocab.table["organism"].astype(str).to_numpy(),
                          "position": vocab.positions})
    table.to_parquet(path, index=False)
