"""BEELINE-format directories: the one reader of their files (`bench.beeline` builds its data sets on it).

A BEELINE directory holds ``ExpressionData.csv`` (genes × cells, the first column naming the genes), a reference
network CSV (columns Gene1 → Gene2, usually ``refNetwork.csv``) and optionally ``PseudoTime.csv`` (cells ×
lineages). Here they are read and checked once; what a caller makes of them (a ground truth, an AnnData) is its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from grnformer.bench.truths.ground_truth import (
    GroundTruth,
    finish_truth,
    normalise_edges,
    normalise_symbols,
    source,
)
from grnformer.data.genes import organism_id
from grnformer.data.input.prepare import ORGANISM_COLUMN
from grnformer.errors import InputError

EXPRESSION, REFERENCE, PSEUDOTIME = "ExpressionData.csv", "refNetwork.csv", "PseudoTime.csv"
# The layout of BEELINE's distributed benchmark sets (one folder per truth and gene-set size: the gzipped
# expression table, the truth's edges and the gene set's TFs).
LAYOUTS = ((EXPRESSION, REFERENCE), ("BL--ExpressionData.csv.gz", "BL--network.csv.gz"))


def layout(directory: str | Path) -> tuple[str, str] | None:
    """(expression file, reference file) of the first layout whose two files the directory holds, else None."""
    path = directory_of(directory)
    return next(((e, r) for e, r in LAYOUTS if (path / e).is_file() and (path / r).is_file()), None)


def directory_of(path: str | Path) -> Path:
    """``path`` as a Path, refused when it is no directory (the first thing every reader checks)."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"BEELINE directory '{path}' does not exist (expected {EXPRESSION} and {REFERENCE} in it).")
    return path


def read_table(path: Path, what: str, **read_csv) -> pd.DataFrame:
    """A CSV of a BEELINE directory; a file pandas cannot parse is an InputError naming it."""
    try:
        return pd.read_csv(path, **read_csv)
    except Exception as err:  # pandas raises many types for a malformed CSV
        raise InputError(f"could not read {what} {path} as CSV ({type(err).__name__}: {err}).") from err


def read_expression(directory: str | Path, file: str = EXPRESSION) -> pd.DataFrame:
    """The expression table (ExpressionData.csv, or ``file``) as genes × cells of numbers: index = the gene names as
    written (stripped), each once; columns = cell names (strings)."""
    path = directory_of(directory) / file
    if not path.is_file():
        raise InputError(f"{path} not found: a BEELINE directory holds {file} (genes × cells).")
    table = read_table(path, "expression table", index_col=0)
    if table.empty or not all(pd.api.types.is_numeric_dtype(t) for t in table.dtypes):
        raise InputError(f"{path} must be genes × cells of numbers, the first column naming genes.")
    table.index = table.index.astype(str).str.strip()
    if table.index.duplicated().any():
        raise InputError(f"{path} names a gene on several rows; BEELINE tables name each gene once.")
    table.columns = table.columns.astype(str)
    return table


def _network_file(directory: Path, network_file: str | None) -> Path:
    if network_file is not None:
        return directory / network_file
    found = sorted(p for p in directory.glob("*.csv") if p.name != EXPRESSION
                   and {"Gene1", "Gene2"} <= set(read_table(p, "CSV", nrows=0).columns))
    if len(found) != 1:
        raise InputError(f"{directory} must hold exactly one reference network CSV with columns Gene1,Gene2 "
                         f"(found {[p.name for p in found]}); name it with network_file=")
    return found[0]


def read_reference(directory: str | Path, network_file: str | None = None) -> tuple[pd.DataFrame, Path]:
    """The reference network's rows (strings; Gene1 = regulator, Gene2 = target, other columns kept) and its file.

    Without ``network_file``, the one CSV of the directory besides the expression table that has those columns."""
    path = _network_file(directory_of(directory), network_file)
    if not path.is_file():
        raise InputError(f"{path} not found: name the reference network CSV of the BEELINE directory.")
    ref = read_table(path, "reference network", dtype=str)
    if not {"Gene1", "Gene2"} <= set(ref.columns):
        raise InputError(f"{path} needs columns Gene1 (regulator) and Gene2 (target); it has {list(ref.columns)}.")
    return ref, path


def beeline(directory: str | Path, network_file: str | None = None, organism: str | None = None) -> GroundTruth:
    """The reference network of a BEELINE-format directory (a CSV with columns Gene1 → Gene2)."""
    ref, path = read_reference(directory, network_file)
    org = organism_id(organism) if organism else "unknown"
    edges = ref.rename(columns={"Gene1": "regulator", "Gene2": "target"})[["regulator", "target"]].dropna()
    prov = source(path, format="BEELINE", rows=len(ref))
    if organism:
        edges = normalise_edges(edges, org, prov)
    else:
        prov["symbols"] = "as given (no organism: not normalised)"
    return finish_truth(edges, f"beeline_{Path(directory).name}", org, prov)


def beeline_expression(directory: str | Path, organism: str | None = None) -> AnnData:
    """ExpressionData.csv of a BEELINE directory (genes × cells, already normalised) as a cells × genes AnnData
    with ``var_names`` = symbols (normalised when the organism is given) and ``uns['transform'] = 'given'``."""
    expr = read_expression(directory)
    genes = expr.index.to_numpy(dtype=object)
    if organism:
        genes, _ = normalise_symbols(genes, organism)
    adata = AnnData(expr.to_numpy(dtype=np.float32).T, obs=pd.DataFrame(index=expr.columns),
                    var=pd.DataFrame({"symbol": genes}, index=pd.Index(genes.astype(str))))
    adata.var_names_make_unique()
    adata.uns["transform"] = "given"
    if organism:
        adata.obs[ORGANISM_COLUMN] = organism_id(organism)
    return adata
