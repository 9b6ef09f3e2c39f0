"""A user's cells as the model sees them: validated and mapped onto the vocabulary (`data.input.prepare`), with what
is needed to map results back onto the user's own AnnData (prepare() may drop cells with no counts and renames
genes to Ensembl IDs), groups of cells, and gene lists resolved by name."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from grnformer.bundle.checkpoint import Bundle
from grnformer.data.collate import CellRecord
from grnformer.data.corpus.store import AnnDataCells
from grnformer.data.genes import GeneVocab
from grnformer.data.input.gene_names import match_names
from grnformer.data.input.prepare import (
    ORGANISM_COLUMN,
    MappingReport,
    n_repeated_obs_names,
    prepare,
    unique_names,
)
from grnformer.data.input.read import read_cells
from grnformer.errors import InputError
from grnformer.inference.option_fields import MAX_MISSING_GENES


@dataclass
class Prepared:
    """A user's AnnData after prepare(), with what the tasks need to run the model and map results back."""

    adata: AnnData        # vocabulary genes (Ensembl IDs), CSR raw counts, zero-count cells dropped
    report: MappingReport
    tokens: np.ndarray    # int64 token id of each prepared gene
    obs_rows: np.ndarray  # row of each prepared cell in the user's AnnData
    organism: str
    cells: AnnDataCells   # records of the prepared cells, with true label codes where obs has them
    vocab: GeneVocab | None = None  # the bundle's vocabulary (gene-name matching breaks ties with it)
    genes_not_found: list[str] = field(default_factory=list)  # names of the last gene list that did not map

    @property
    def n_cells(self) -> int:
        return self.adata.n_obs

    def expressed_per_cell(self) -> np.ndarray:
        """How many vocabulary genes each prepared cell expresses (the genes of its records)."""
        return np.diff(self.cells.x.indptr)

    def records(self, rows: np.ndarray) -> list[CellRecord]:
        return self.cells.__getitems__([int(r) for r in rows])

    def user_var_columns(self, user: AnnData) -> np.ndarray:
        """Prepared-gene column of each column of ``user`` (-1 for genes that did not map).

        Genes are matched by the names prepare() read (var_names or a gene-ID column). When several input
        columns were summed into one gene, the first of them carries the gene's values."""
        match = re.fullmatch(r'var\["(.+)"\]', self.report.gene_source)
        names = user.var[match.group(1)] if match and match.group(1) in user.var else user.var_names
        names = pd.Index(np.asarray(names).astype(str))
        first = pd.Series(np.arange(self.adata.n_vars), index=self.adata.var["input_name"].astype(str).to_numpy())
        cols = first.reindex(names).fillna(-1).to_numpy(dtype=np.int64)
        cols[names.duplicated()] = -1
        return cols

    def to_user_rows(self, values: np.ndarray, n_obs: int) -> np.ndarray:
        """Per-cell results placed on the user's rows; cells prepare() dropped get NaN (numbers) or None."""
        values = np.asarray(values)
        if np.issubdtype(values.dtype, np.number):
            out = np.full((n_obs,) + values.shape[1:], np.nan, dtype=np.float32)
        else:
            out = np.full((n_obs,) + values.shape[1:], None, dtype=object)
        out[self.obs_rows] = values
        return out


def read_input(path: str | Path | AnnData) -> AnnData:
    """A file of cells as AnnData (an AnnData is passed through): h5ad, 10x h5 or MTX directory, loom, CSV/TSV —
    `data.input.read.read_cells`; a missing or unreadable file is an InputError.

    Repeated cell names are made unique here (warned), so that no output holds two cells of one name."""
    if isinstance(path, AnnData):
        return path
    adata = read_cells(path)
    n_repeated = n_repeated_obs_names(adata.obs_names)
    if n_repeated:
        warnings.warn(f"{path}: {n_repeated:,} cell names repeat an earlier one; made them unique with a suffix "
                      f"(-1, -2 …) in the outputs", stacklevel=2)
        adata.obs_names = unique_names(adata.obs_names)
    return adata


def prepare_input(bundle: Bundle, adata: AnnData, organism: str | None = None) -> Prepared:
    """Validate and map ``adata`` to the bundle's vocabulary (InputError on bad input)."""
    if not isinstance(adata, AnnData):
        raise InputError(f"expected an AnnData, got {type(adata).__name__}.")
    prepared, report = prepare(adata, organism=organism, vocab=bundle.vocab)
    if prepared.n_obs == adata.n_obs:
        obs_rows = np.arange(adata.n_obs)
    elif adata.obs_names.is_unique:
        obs_rows = adata.obs_names.get_indexer(prepared.obs_names)
    else:
        obs_rows = _kept_rows(adata, prepared)
    return Prepared(prepared, report, bundle.vocab.index(prepared.var_names), np.asarray(obs_rows, dtype=np.int64),
                    str(prepared.obs[ORGANISM_COLUMN].iloc[0]), AnnDataCells(prepared, bundle.vocab, bundle.labels),
                    bundle.vocab)


def _kept_rows(user: AnnData, prepared: AnnData) -> np.ndarray:
    """Rows prepare() kept when obs names repeat: it made them unique the same way and keeps order, so a greedy
    walk over the user's names made unique recovers them."""
    names = prepared.obs_names.to_numpy()
    rows, j = [], 0
    for i, name in enumerate(unique_names(user.obs_names)):
        if j < len(names) and name == names[j]:
            rows.append(i)
            j += 1
    return np.asarray(rows)


def cells_in_groups(prep: Prepared, groupby: str | None, groups: Sequence[str] | None = None
                    ) -> dict[str, np.ndarray]:
    """Prepared rows of each group of obs[``groupby``] (all cells under 'all' when groupby is None)."""
    if groupby is None:
        if groups is not None:
            raise InputError("groups were given without groupby.")
        return {"all": np.arange(prep.n_cells)}
    if groupby not in prep.adata.obs:
        cols = ", ".join(map(str, prep.adata.obs.columns[:30])) or "none"
        raise InputError(f"groupby column '{groupby}' is not in obs; obs columns: {cols}.")
    values = prep.adata.obs[groupby]
    present = values.dropna().astype(str)
    if len(present) == 0:
        raise InputError(f"obs['{groupby}'] holds no values (all missing).")
    out = {str(g): np.flatnonzero((values.astype(str) == g).to_numpy() & values.notna().to_numpy())
           for g in pd.unique(present)}
    if groups is not None:
        empty = [str(g) for g in groups if str(g) not in out]
        if empty:
            raise InputError(f"groups with no cells in obs['{groupby}']: {', '.join(empty)}; present: "
                             f"{', '.join(sorted(out)[:30])}.")
        out = {str(g): out[str(g)] for g in groups}
    return out


def resolve_gene_names(prep: Prepared, names: Sequence[str], max_missing: float = MAX_MISSING_GENES
                       ) -> np.ndarray:
    """Prepared columns of genes named by the data's own names, Ensembl IDs or symbols (`gene_names` rules).

    Names that are not among the prepared genes are left out with a warning that lists them, and recorded in
    ``prep.genes_not_found`` (the tasks put them in their outputs' uns). More than ``max_missing`` (a share) of the
    list missing is an InputError: that list was probably meant for other data."""
    if not 0 <= max_missing < 1:
        raise InputError(f"max_missing must be a share in [0, 1) (got {max_missing}).")
    names = [str(n).strip() for n in names]
    if not names:
        raise InputError("the gene list is empty.")
    var = prep.adata.var
    own = pd.Series(np.arange(prep.adata.n_vars), index=var["input_name"].astype(str).to_numpy())
    own = own[~own.index.duplicated()]
    col_of_id = pd.Series(np.arange(prep.adata.n_vars), index=var.index.astype(str))
    cols = own.reindex(names).to_numpy(dtype=np.float64)
    todo = np.flatnonzero(np.isnan(cols))
    if len(todo):
        match = match_names([names[i] for i in todo], prep.organism, prep.vocab)
        ids = pd.Index([g if g is not None else "" for g in match.gene_id])
        cols[todo] = col_of_id.reindex(ids).to_numpy(dtype=np.float64)
    missing = [names[i] for i in np.flatnonzero(np.isnan(cols))]
    prep.genes_not_found = missing
    if len(missing) > max_missing * len(names):
        raise InputError(f"{len(missing)} of {len(names)} genes are not among the {prep.adata.n_vars:,} genes of "
                         f"the data that map to the model's vocabulary (more than {max_missing:.0%} of the list; "
                         f"max_missing sets this): {', '.join(missing[:50])}{' …' if len(missing) > 50 else ''}.")
    if missing:
        warnings.warn(f"{len(missing)} of {len(names)} listed genes are not among the {prep.adata.n_vars:,} genes "
                      f"of the data that map to the model's vocabulary; using the other {len(names) - len(missing)} "
                      f"(left out: {', '.join(missing[:50])}{' …' if len(missing) > 50 else ''}).", stacklevel=3)
    found = cols[~np.isnan(cols)].astype(np.int64)
    return np.asarray(list(dict.fromkeys(found.tolist())), dtype=np.int64)  # a gene named twice: keep the first
