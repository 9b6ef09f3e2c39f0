"""Cells with their ontology labels straight from a TileDB-SOMA experiment (the CELLxGENE Census format).

`SomaCells` reads an experiment, local or remote (same code; only the URI and TileDB configuration differ), as a
map-style dataset of CellRecords, like `Corpus`. A DataLoader batch is fetched with one X query
(``__getitems__``), so it works with `LabelBalancedSampler` / `ShardedEpochSampler` over ``label_codes``;
`grnformer pretrain` trains from it through the corpus data module (``data.soma.uri``, docs/TRAINING.md).
(A block reader, far faster per cell but without label balancing or exact resume, is measured in
benchmarks/bench_streaming.py; see docs/TRAINING.md for why training does not use it.)

The CELLxGENE Census human experiment (public, anonymous S3; the build tag is the release date)::

    uri = "s3://cellxgene-census-public-us-west-2/cell-census/2025-11-08/soma/census_data/homo_sapiens"
    cells = SomaCells(uri, label_set=LABEL_CLASSES, obs_filter="is_primary_data == True",
                      tiledb_config={"vfs.s3.region": "us-west-2", "vfs.s3.no_sign_request": "true"})

(``label_set=LABEL_CLASSES`` fits the label encoders on the selected cells, as `grnformer pretrain` does; pass a
`LabelSet` to encode with given encoders instead.)

Census conventions are the defaults: measurement "RNA", raw counts in X layer "raw", Ensembl IDs in
var["feature_id"], labels in obs["<class>_ontology_term_id"]; the organism comes from
obs["organism_ontology_term_id"] when present, else from the experiment name (homo_sapiens, mus_musculus), else
the ``organism`` argument. A local experiment written with ``tiledbsoma.io.from_h5ad(uri, path, "RNA",
X_layer_name="raw", var_id_name="feature_id")`` from a prepared h5ad reads the same way.
Genes outside the vocabulary are dropped.
"""

from __future__ import annotations

import gc
import os
import weakref
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from grnformer.data.collate import CellRecord
from grnformer.data.corpus.labels import LABEL_CLASSES, LabelEncoder, LabelSet, column
from grnformer.data.genes import HUMAN, MOUSE, GeneVocab, organism_id
from grnformer.data.input.prepare import ORGANISM_COLUMN
from grnformer.errors import InputError

try:
    import tiledbsoma
except ImportError:  # optional dependency: pip install grnformer[soma]
    tiledbsoma = None

CENSUS_ORGANISMS = {"homo_sapiens": HUMAN, "mus_musculus": MOUSE}  # Census experiment names; terms: data.genes
_OPEN: weakref.WeakSet = weakref.WeakSet()  # readers holding a TileDB handle in this process


def _close_before_fork() -> None:
    """A child forked while TileDB handles (and their thread pools) are alive can deadlock on its first read,
    e.g. in DataLoader workers; closing them first lets each worker open its own."""
    if not _OPEN:
        return
    for cells in list(_OPEN):
        cells.close()
    gc.collect()  # frees the TileDB contexts, joining their threads


os.register_at_fork(before=_close_before_fork)


class SomaCells(torch.utils.data.Dataset):
    """CellRecords of the cells of a SOMA experiment selected by ``obs_filter`` (a SOMA value filter).

    ``label_set``: the encoders of ``label_codes``, or label class names whose encoders are fitted on the terms
    of the selected cells (what `LabelSet.fit` gives on their obs); the encoders used are ``self.label_set``.
    The organism class labels each cell with its organism (from obs or the experiment, see the module docstring).
    Opening reads only obs label columns and var IDs (label codes are int32 [n_cells, n_classes]); X is read on
    demand, per process, so DataLoader workers each open their own handle.
    """

    def __init__(self, uri: str, vocab: GeneVocab | None = None,
                 label_set: LabelSet | Sequence[str] | None = None, obs_filter: str | None = None,
                 measurement: str = "RNA", layer: str = "raw", var_id_column: str = "feature_id",
                 organism: str | None = None, tiledb_config: dict | None = None) -> None:
        if tiledbsoma is None:
            raise ImportError("reading SOMA experiments needs tiledbsoma: pip install 'grnformer[soma]'.")
        self.uri, self.measurement, self.layer = uri, measurement, layer
        # YAML gives booleans, TileDB reads "true" / "false"
        self.tiledb_config = {k: str(v).lower() if isinstance(v, bool) else v
                              for k, v in (tiledb_config or {}).items()}
        self.vocab = GeneVocab.default() if vocab is None else vocab
        if label_set is None or isinstance(label_set, LabelSet):
            self.label_classes = [] if label_set is None else list(label_set.classes)
        else:
            self.label_classes = list(label_set)
            unknown = [c for c in self.label_classes if c not in LABEL_CLASSES]
            if unknown:
                raise InputError(f"unknown label classes {unknown}: choose among {', '.join(LABEL_CLASSES)}.")
        self._exp = None
        self._pid: int | None = None
        try:
            exp = self._experiment()
        except Exception as err:  # tiledbsoma raises DoesNotExistError, SOMAError, ... for a bad URI
            raise InputError(f"could not open SOMA experiment '{uri}' ({type(err).__name__}: {err}).") from err
        if measurement not in exp.ms or layer not in exp.ms[measurement].X:
            raise InputError(f"SOMA experiment '{uri}' has no X layer '{layer}' in measurement '{measurement}' "
                             f"(measurements: {list(exp.ms.keys())}).")
        self._read_var(exp, var_id_column)
        self._read_obs(exp, label_set, obs_filter, organism)

    # --------------------------------------------------------------------------------------------- opening

    def _experiment(self):
        """This process's open experiment (TileDB handles must not cross a fork)."""
        if self._exp is None or self._pid != os.getpid():
            context = tiledbsoma.SOMATileDBContext(tiledb_config=self.tiledb_config)
            self._exp, self._pid = tiledbsoma.Experiment.open(self.uri, context=context), os.getpid()
            _OPEN.add(self)
        return self._exp

    def close(self) -> None:
        """Release the TileDB handle (reopened on the next read)."""
        if self._exp is not None and self._pid == os.getpid():
            self._exp.close()
        self._exp, self._pid = None, None
        _OPEN.discard(self)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_exp"], state["_pid"] = None, None
        return state

    def _read_var(self, exp, var_id_column: str) -> None:
        var = exp.ms[self.measurement].var
        if var_id_column not in var.schema.names:
            raise InputError(f"var of '{self.uri}' has no column '{var_id_column}' (columns: {var.schema.names}); "
                             "pass var_id_column naming the Ensembl IDs.")
        table = var.read(column_names=["soma_joinid", var_id_column]).concat()
        joinid = table.column("soma_joinid").to_numpy()
        tokens = self.vocab.index(table.column(var_id_column).to_pylist())
        if (tokens >= 0).sum() == 0:
            raise InputError(f"no gene of var['{var_id_column}'] in '{self.uri}' is in the vocabulary "
                             f"(e.g. {table.column(var_id_column).to_pylist()[:5]}): Ensembl IDs are needed.")
        self.token_of_var = np.full(int(joinid.max()) + 1, -1, dtype=np.int64)
        self.token_of_var[joinid] = tokens
        self.n_genes_mapped = int((tokens >= 0).sum())
        mapped = self.token_of_var[self.token_of_var >= 0]
        self._tokens_increase = bool(np.all(np.diff(mapped) > 0))  # then X order is already token order

    def _read_obs(self, exp, label_set: LabelSet | Sequence[str] | None, obs_filter: str | None,
                  organism: str | None) -> None:
        names = exp.obs.schema.names
        columns = [c for c in dict.fromkeys([ORGANISM_COLUMN] + [column(c) for c in self.label_classes])
                   if c in names]
        joinids, terms = [], {c: _Terms() for c in columns}
        for batch in self._obs_batches(exp, ["soma_joinid", *columns], obs_filter):
            frame = batch.to_pandas()
            joinids.append(frame["soma_joinid"].to_numpy())
            for c, t in terms.items():
                t.add(frame[c])
        self.joinids = np.concatenate(joinids) if joinids else np.empty(0, dtype=np.int64)
        if len(self.joinids) == 0:
            raise InputError(f"no cell of '{self.uri}' matches the filter {obs_filter!r}.")
        order = np.argsort(self.joinids, kind="stable")
        self.joinids = self.joinids[order]
        if ORGANISM_COLUMN in terms:
            self.organism_codes = terms[ORGANISM_COLUMN].codes()[order].astype(np.int16)
            if (self.organism_codes < 0).any():
                raise InputError(f"{int((self.organism_codes < 0).sum())} selected cells of '{self.uri}' have no "
                                 f"obs['{ORGANISM_COLUMN}'].")
            self.organisms = [organism_id(o) for o in terms[ORGANISM_COLUMN].values]
            if organism is not None and set(self.organisms) != {organism_id(organism)}:
                raise InputError(f"organism='{organism}' contradicts obs['{ORGANISM_COLUMN}'] of '{self.uri}' "
                                 f"({', '.join(self.organisms)}).")
        else:
            self.organisms = [self._experiment_organism(organism)]
            self.organism_codes = np.zeros(len(self.joinids), dtype=np.int16)
        self._encode_labels(label_set, {c: (t.codes()[order], t.values) for c, t in terms.items()})

    def _encode_labels(self, label_set: LabelSet | Sequence[str] | None,
                       terms: dict[str, tuple[np.ndarray, list[str]]]) -> None:
        """label_codes (and label_set, fitted when given class names) from each column's term ids and terms."""
        terms[column("organism")] = (self.organism_codes, self.organisms)  # normalised, column or not
        if label_set is not None and not isinstance(label_set, LabelSet):
            label_set = LabelSet({c: LabelEncoder.fit(c, terms.get(column(c), (None, []))[1])
                                  for c in self.label_classes})
        self.label_set = label_set
        self.label_codes = np.full((len(self.joinids), len(self.label_classes)), -1, dtype=np.int32)
        for k, c in enumerate(self.label_classes):
            if column(c) in terms:
                ids, values = terms[column(c)]
                self.label_codes[:, k] = np.append(label_set.encoders[c].codes(values), -1)[ids]

    def _obs_batches(self, exp, columns: list[str], obs_filter: str | None) -> Iterator:
        """Arrow batches of obs; a malformed value filter (refused when parsed or read) becomes an InputError."""
        reader = None
        while True:
            try:
                reader = reader or iter(exp.obs.read(column_names=columns, value_filter=obs_filter))
                batch = next(reader)
            except StopIteration:
                return
            except Exception as err:  # tiledbsoma raises SOMAError / ValueError / TileDBError for bad filters
                detail = str(err).split("\n", 1)[0]  # TileDB appends a C++ trace
                raise InputError(f"could not read obs of '{self.uri}' with filter {obs_filter!r} "
                                 f"({type(err).__name__}: {detail}).") from err
            yield batch

    def _experiment_organism(self, organism: str | None) -> str:
        if organism is not None:
            return organism_id(organism)
        name = self.uri.rstrip("/").rsplit("/", 1)[-1]
        if name in CENSUS_ORGANISMS:
            return CENSUS_ORGANISMS[name]
        raise InputError(f"'{self.uri}' has no obs['{ORGANISM_COLUMN}'] and its name does not say the organism: "
                         "pass organism='human' or 'mouse'.")

    # --------------------------------------------------------------------------------------------- reading

    def __len__(self) -> int:
        return len(self.joinids)

    def __getitem__(self, i: int) -> CellRecord:
        return self.read(np.array([int(i)]))[0]

    def __getitems__(self, indices: list[int]) -> list[CellRecord]:
        return self.read(np.asarray(indices, dtype=np.int64))

    def read(self, rows: np.ndarray) -> list[CellRecord]:
        """CellRecords of dataset rows ``rows`` (in that order), fetched with one X query."""
        if len(rows) == 0:
            return []
        ids = self.joinids[rows]
        unique_ids = np.unique(ids)
        x = self._experiment().ms[self.measurement].X[self.layer]
        table = x.read(coords=(unique_ids,)).tables().concat()
        cell = table.column("soma_dim_0").to_numpy()
        token = self.token_of_var[table.column("soma_dim_1").to_numpy()]
        counts = table.column("soma_data").to_numpy()
        keep = (token >= 0) & (counts != 0)
        cell, token, counts = cell[keep], token[keep], counts[keep]
        step = np.diff(cell)
        if not (np.all(step >= 0) and self._tokens_increase and np.all((step > 0) | (np.diff(token) > 0))):
            # TileDB returns tiles in storage order; runs inside are sorted, which a stable sort exploits
            order = np.argsort(cell * len(self.vocab) + token, kind="stable")
            cell, token, counts = cell[order], token[order], counts[order]
        lo = np.searchsorted(cell, ids, side="left")
        hi = np.searchsorted(cell, ids, side="right")
        return [CellRecord(genes=token[a:b].astype(np.int64), counts=counts[a:b].astype(np.float32),
                           labels=self.label_codes[r].astype(np.int64),
                           organism=self.organisms[self.organism_codes[r]])
                for r, a, b in zip(rows.tolist(), lo.tolist(), hi.tolist())]

    def obs(self, columns: list[str] | None = None) -> pd.DataFrame:
        """obs columns of the selected cells, in dataset row order (read on request: the Census obs is large)."""
        names = None if columns is None else ["soma_joinid", *columns]
        table = self._experiment().obs.read(coords=(self.joinids,), column_names=names).concat().to_pandas()
        return table.set_index("soma_joinid").loc[self.joinids]


class _Terms:
    """One obs string column read batch by batch as int32 ids into its distinct values (-1 = missing): the
    Census obs has tens of millions of rows but a few hundred terms per column."""

    def __init__(self) -> None:
        self._id: dict[str, int] = {}
        self._parts: list[np.ndarray] = []

    def add(self, values: pd.Series) -> None:
        codes, uniques = pd.factorize(values)  # categorical columns are factorized without a per-row str
        table = np.array([self._id.setdefault(str(u), len(self._id)) for u in uniques] + [-1], dtype=np.int32)
        self._parts.append(table[codes])

    @property
    def values(self) -> list[str]:
        return list(self._id)

    def codes(self) -> np.ndarray:
        return np.concatenate(self._parts) if self._parts else np.empty(0, dtype=np.int32)
