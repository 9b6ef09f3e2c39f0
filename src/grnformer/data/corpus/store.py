"""The on-disk training corpus: many AnnData sources → one sharded CSR store, read back as CellRecords.

Layout of a corpus directory (format 1)::

    manifest.json            vocabulary hash, label set, sources, shards, versions
    genes.parquet            the vocabulary the token ids refer to (gene_id, symbol, organism, position)
    cells.parquet            one row per cell: cell, dataset, obs_name, shard, row, organism, n_counts,
                             n_genes, label_<class> codes
    shards/NNNNN.indptr.npy  int64 [n_cells + 1]
    shards/NNNNN.indices.npy token ids (uint16 while the vocabulary fits, else int32)
    shards/NNNNN.data.npy    float32 raw counts

Shards are plain .npy files so a reader fetches only the bytes of the cells it asks for. This module reads a
corpus (`Corpus`, and `AnnDataCells` for a prepared AnnData in memory); `data.corpus.build.build_corpus` writes one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp
import torch
from anndata import AnnData

from grnformer.data.collate import CellRecord
from grnformer.data.corpus.labels import LabelSet
from grnformer.data.genes import GeneVocab, organism_id
from grnformer.data.input.prepare import ORGANISM_COLUMN
from grnformer.errors import InputError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CELLS = "cells.parquet"
GENES = "genes.parquet"
SHARDS = "shards"


def vocab_hash(vocab: GeneVocab) -> str:
    """Identity of a vocabulary's token mapping (gene IDs and organisms in token order)."""
    h = hashlib.sha256()
    h.update("\n".join(vocab.ids.astype(str)).encode())
    h.update("\n".join(vocab.table["organism"].astype(str)).encode())
    return h.hexdigest()


def label_classes(label_set: LabelSet | None) -> list[str]:
    """The label classes of a corpus built with ``label_set`` (none without one)."""
    return [] if label_set is None else list(label_set.classes)


def encode_labels(label_set: LabelSet | None, obs: pd.DataFrame) -> np.ndarray:
    """Label codes [n_cells, n_classes] of ``obs`` (no columns without a label set)."""
    if label_set is None:
        return np.zeros((len(obs), 0), dtype=np.int64)
    return np.asarray(label_set.encode(obs), dtype=np.int64)


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
                             f"(e.g. {list(adata.var_names[tokens < 0][:5])}): run grnformer.data.input.prepare first.")
        if ORGANISM_COLUMN not in adata.obs:
            raise InputError(f"the AnnData has no obs['{ORGANISM_COLUMN}']: run grnformer.data.input.prepare first.")
        x = sp.csr_matrix(adata.X, dtype=np.float32)
        x = sp.csr_matrix((x.data, tokens[x.indices], x.indptr), shape=(adata.n_obs, len(vocab)))
        x.sum_duplicates()  # sorts token ids within each cell and merges repeated genes
        x.eliminate_zeros()
        self.x = x
        self.obs = adata.obs
        self.label_classes = label_classes(label_set)
        self.label_codes = encode_labels(label_set, adata.obs)
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
