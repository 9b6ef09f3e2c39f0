"""Cells from the files people have: the one reader every command goes through (`read_cells(path) -> AnnData`).

Formats: h5ad; 10x HDF5 (Cell Ranger v3 ``/matrix`` layout and the older v2 one-group-per-genome layout); a 10x
MTX directory (``matrix.mtx``, ``features.tsv`` or ``genes.tsv``, ``barcodes.tsv``, each gzipped or not, with an
optional common file-name prefix as GEO writes them); loom; CSV / TSV tables, gzipped or not, cells × genes or
genes × cells. The readers are anndata's and scanpy's (``read_h5ad``, ``sc.read_10x_h5``, ``sc.read_10x_mtx``,
``read_loom``) and pandas for tables; this module only decides which one applies and what the result is called.

- The format comes from the content where it can: an HDF5 file is h5ad, 10x or loom by its layout, whatever its
  suffix; other files by suffix. A file that fails gets one InputError naming the format tried.
- Gene IDs are kept beside the names: 10x files give ``var['gene_ids']`` (Ensembl IDs) with symbols as var_names,
  loom's ``Accession`` row attribute becomes ``var['gene_ids']``, a table's extra gene column of Ensembl IDs too;
  `prepare` maps by whichever of var_names and the ID column names more vocabulary genes.
- Tables: orientation rule (decision). The axis whose labels are known gene names (symbols of the vocabulary,
  any case, or Ensembl gene IDs) holds the genes. When neither axis reaches `MIN_GENE_SHARE` known names, rows are
  taken to be cells (the AnnData convention, also anndata.read_csv's). Either way a warning states which
  orientation was assumed and why, and ``uns['grnformer_read']`` records it. Leading non-numeric columns are
  labels: the first names the rows, the others become obs / var columns.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from grnformer.data.input.gene_names import ENSEMBL
from grnformer.errors import InputError

FORMATS = ("h5ad; 10x HDF5 (.h5, v2 or v3); a 10x MTX directory (matrix.mtx, features.tsv or genes.tsv, "
           "barcodes.tsv, gzipped or not); loom; CSV or TSV tables (.gz or not)")
NAMES = {"h5ad": "an h5ad file", "10x_h5": "a 10x HDF5 file", "mtx": "a 10x MTX directory", "loom": "a loom file",
         "csv": "a CSV table", "tsv": "a TSV table"}
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MIN_GENE_SHARE = 0.1  # share of an axis's labels that must be known gene names for it to count as the genes
_TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".tab": "tsv"}
_LOOM_ROWS = ("Gene", "var_names", "gene_symbols", "gene_names", "gene", "Symbol")
_LOOM_COLS = ("CellID", "obs_names", "cell_names", "CellName", "barcode", "Barcode", "cell")


def read_cells(path: str | Path) -> AnnData:
    """The cells of ``path`` (any of `FORMATS`) as AnnData, cells × genes, values as stored.

    ``uns['grnformer_read']`` says which format was read (and for tables which orientation was assumed, why).
    A missing path, an unknown format or a file that cannot be read as its format is an InputError."""
    path = Path(path)
    fmt, target = detect_format(path)
    try:
        with warnings.catch_warnings():  # repeated gene names are prepare's to count and sum, not anndata's
            warnings.filterwarnings("ignore", message="Variable names are not unique")
            adata, record = _READERS[fmt](target)
    except InputError:
        raise
    except Exception as err:  # h5py, anndata, scanpy, pandas and gzip raise many types for a broken file
        raise InputError(f"could not read '{path}' as {NAMES[fmt]} ({type(err).__name__}: {err}). The file may be "
                         f"truncated, still being copied, or in another format; grnformer reads {FORMATS}.") from err
    adata.uns["grnformer_read"] = {"format": fmt, "path": str(path), **record}
    return adata


# ------------------------------------------------------------------------------------------------ detection

def detect_format(path: Path) -> tuple[str, Path]:
    """(format, what to read): the format's key in `NAMES` and the file or directory its reader takes."""
    if path.is_dir():
        return "mtx", path
    if not path.exists():
        raise InputError(f"input '{path}' does not exist. grnformer reads {FORMATS}.")
    name = path.name.lower()
    if name.endswith(("matrix.mtx", "matrix.mtx.gz")):
        return "mtx", path  # the matrix file of an MTX directory: its folder is read
    with open(path, "rb") as f:
        head = f.read(8)
    stem = name[:-3] if name.endswith(".gz") else name
    suffix = Path(stem).suffix
    if head == HDF5_SIGNATURE:
        return _hdf5_format(path, suffix), path
    if suffix in (".h5ad", ".h5", ".hdf5", ".loom"):
        kind = {".h5ad": "h5ad", ".loom": "loom"}.get(suffix, "10x_h5")
        raise InputError(f"could not read '{path}' as {NAMES[kind]}: it is not an HDF5 file (it does not start with "
                         f"the HDF5 signature; empty: {path.stat().st_size == 0}). grnformer reads {FORMATS}.")
    if suffix in _TABLE_SUFFIXES:
        return _TABLE_SUFFIXES[suffix], path
    raise InputError(f"'{path}': unknown format (suffix '{suffix or name}'). grnformer reads {FORMATS}; name a table "
                     f".csv or .tsv.")


def _hdf5_format(path: Path, suffix: str) -> str:
    """h5ad, 10x (v3: a /matrix group with features; v2: groups holding genes and indptr) or loom, by layout."""
    import h5py

    guess = {".h5ad": "h5ad", ".loom": "loom"}.get(suffix, "10x_h5")
    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
            if f.attrs.get("encoding-type") == "anndata" or {"X", "obs", "var"} <= keys:
                return "h5ad"
            if "matrix" in keys and isinstance(f["matrix"], h5py.Dataset) and "row_attrs" in keys:
                return "loom"
            if "matrix" in keys and isinstance(f["matrix"], h5py.Group) and "features" in f["matrix"]:
                return "10x_h5"
            if keys and all(isinstance(f[k], h5py.Group) and {"genes", "indptr", "barcodes"} <= set(f[k].keys())
                            for k in keys):
                return "10x_h5"
    except Exception as err:
        raise InputError(f"could not read '{path}' as {NAMES[guess]} (HDF5: {type(err).__name__}: {err}). The file "
                         f"may be truncated or still being copied.") from err
    raise InputError(f"could not read '{path}' as {NAMES[guess]}: it is an HDF5 file but its layout is none of "
                     f"h5ad (X, obs, var), 10x (matrix/features, or per-genome groups) or loom (matrix, row_attrs); "
                     f"top-level keys: {sorted(keys)}.")


# -------------------------------------------------------------------------------------------------- readers

def _read_h5ad(path: Path) -> tuple[AnnData, dict]:
    return anndata.read_h5ad(path), {}


def _read_10x_h5(path: Path) -> tuple[AnnData, dict]:
    import h5py
    import scanpy as sc

    with h5py.File(path, "r") as f:
        layout = "v3" if "matrix" in f else "v2"
        genomes = [] if layout == "v3" else sorted(f.keys())
    if len(genomes) > 1:
        raise InputError(f"could not read '{path}' as {NAMES['10x_h5']}: this v2 file holds several genomes "
                         f"({', '.join(genomes)}); split it per genome (scanpy.read_10x_h5(path, genome=...)).")
    adata = sc.read_10x_h5(path)  # v3: Gene Expression features only; var['gene_ids'] in both layouts
    return adata, {"layout": layout}


def _mtx_files(target: Path) -> tuple[Path, str]:
    """(directory, file-name prefix) of an MTX directory or its matrix file."""
    if target.is_file():
        name = target.name
        return target.parent, name[: name.lower().rindex("matrix.mtx")]
    files = sorted(p.name for p in target.iterdir())
    if not files:
        raise InputError(f"could not read '{target}' as {NAMES['mtx']}: the directory is empty. A 10x directory "
                         f"holds matrix.mtx, features.tsv (or genes.tsv) and barcodes.tsv, gzipped or not.")
    matrices = [n for n in files if n.endswith(("matrix.mtx", "matrix.mtx.gz"))]
    if len(matrices) != 1:
        raise InputError(f"could not read '{target}' as {NAMES['mtx']}: expected one matrix.mtx[.gz], found "
                         f"{matrices or 'none'} among {files[:10]}{' …' if len(files) > 10 else ''}. grnformer "
                         f"reads {FORMATS}.")
    return target, matrices[0][: matrices[0].rindex("matrix.mtx")]


def _first(directory: Path, prefix: str, stems: tuple[str, ...], what: str) -> Path:
    for stem in stems:
        for name in (f"{prefix}{stem}", f"{prefix}{stem}.gz"):
            if (directory / name).is_file():
                return directory / name
    raise InputError(f"could not read '{directory}' as {NAMES['mtx']}: no {prefix}{stems[0]}[.gz] ({what}) beside "
                     f"the matrix.")


def _read_mtx(target: Path) -> tuple[AnnData, dict]:
    """scanpy reads the two layouts Cell Ranger writes (v3: all gzipped, features.tsv.gz; v2: plain, genes.tsv);
    a directory someone gunzipped or gzipped is read with the same steps (scipy's Matrix Market reader, pandas)."""
    import scanpy as sc

    directory, prefix = _mtx_files(target)
    matrix = _first(directory, prefix, ("matrix.mtx",), "counts")
    genes = _first(directory, prefix, ("features.tsv", "genes.tsv"), "gene IDs and names")
    barcodes = _first(directory, prefix, ("barcodes.tsv",), "cell barcodes")
    v3 = genes.name.startswith(f"{prefix}features")
    gz = {p.suffix == ".gz" for p in (matrix, genes, barcodes)}
    if gz == {v3}:  # all gzipped with features.tsv.gz (v3), or all plain with genes.tsv (v2)
        adata = sc.read_10x_mtx(directory, var_names="gene_symbols", make_unique=False, prefix=prefix or None)
    else:
        import scipy.io

        table = pd.read_csv(genes, sep="\t", header=None)
        adata = AnnData(sp.csr_matrix(scipy.io.mmread(matrix).T, dtype=np.float32),
                        obs=pd.DataFrame(index=pd.read_csv(barcodes, sep="\t", header=None)[0].astype(str).values),
                        var=pd.DataFrame({"gene_ids": table[0].astype(str).values},
                                         index=table[1 if table.shape[1] > 1 else 0].astype(str).values))
        if table.shape[1] > 2:
            adata.var["feature_types"] = table[2].astype(str).values
            adata = adata[:, adata.var["feature_types"] == "Gene Expression"].copy()
    return adata, {"layout": "v3" if v3 else "v2", "gzipped": sorted(p.name for p in (matrix, genes, barcodes)
                                                                    if p.suffix == ".gz")}


def _read_loom(path: Path) -> tuple[AnnData, dict]:
    import h5py

    with h5py.File(path, "r") as f:
        var_key = _loom_names(f.get("row_attrs"), _LOOM_ROWS, avoid=("Accession", "gene_ids"))
        obs_key = _loom_names(f.get("col_attrs"), _LOOM_COLS)
    try:
        import loompy  # noqa: F401  (anndata's loom reader needs it)
    except ImportError as err:
        raise InputError(f"reading loom files needs the loompy package (pip install loompy); '{path}' was not "
                         "read.") from err
    read_loom = getattr(getattr(anndata, "io", None), "read_loom", None) or anndata.read_loom  # anndata < 0.11
    adata = read_loom(path, sparse=True, X_name="", var_names=var_key, obs_names=obs_key)
    adata.var.index, adata.obs.index = adata.var.index.astype(str), adata.obs.index.astype(str)
    if "Accession" in adata.var and "gene_ids" not in adata.var:  # loom's name for the gene ID
        adata.var["gene_ids"] = adata.var["Accession"].astype(str)
    return adata, {"var_names": var_key or "none", "obs_names": obs_key or "none"}


def _loom_names(attrs, known: tuple[str, ...], avoid: tuple[str, ...] = ()) -> str:
    """The attribute naming a loom axis: a conventional name, else the first attribute of unique strings (anndata
    writes the index under its name), IDs last; '' when none."""
    if attrs is None:
        return ""
    keys = list(attrs.keys())
    for key in known:
        if key in keys:
            return key
    unique = [k for k in keys if attrs[k].ndim == 1 and attrs[k].dtype.kind in "SOU"
              and len(set(attrs[k][()])) == attrs[k].shape[0]]
    return next((k for k in unique if k not in avoid), next(iter(unique), ""))


def _read_csv(path: Path) -> tuple[AnnData, dict]:
    return _read_table(path, ",")


def _read_tsv(path: Path) -> tuple[AnnData, dict]:
    return _read_table(path, "\t")


_READERS = {"h5ad": _read_h5ad, "10x_h5": _read_10x_h5, "mtx": _read_mtx, "loom": _read_loom,
            "csv": _read_csv, "tsv": _read_tsv}


# ---------------------------------------------------------------------------------------------------- tables

def _read_table(path: Path, sep: str) -> tuple[AnnData, dict]:
    kind = "csv" if sep == "," else "tsv"
    df = pd.read_csv(path, sep=sep, low_memory=False)
    if isinstance(df.index, pd.RangeIndex):  # the header names the label column too: it labels the rows
        if df.shape[1] < 2:
            raise InputError(f"could not read '{path}' as {NAMES[kind]}: it has {df.shape[1]} column(s); a table of "
                             f"counts has one column of names and one per cell or gene.")
        df = df.set_index(df.columns[0])
    n_labels = 0  # leading text columns are labels; a mostly numeric column with a few words is a broken one
    while n_labels < df.shape[1] and not pd.api.types.is_numeric_dtype(df.dtypes.iloc[n_labels]) \
            and pd.to_numeric(df.iloc[:, n_labels], errors="coerce").notna().mean() < 0.5:
        n_labels += 1
    labels, values = df.iloc[:, :n_labels], df.iloc[:, n_labels:]
    bad = [c for c, t in values.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    if values.shape[1] == 0 or bad:
        raise InputError(f"could not read '{path}' as {NAMES[kind]} of counts: "
                         + (f"column(s) {[str(c) for c in bad[:5]]} hold values that are not numbers "
                            f"(e.g. {_first_word(values[bad[0]])!r})." if bad else "no numeric column."))
    matrix = values.to_numpy(dtype=np.float32)
    n_missing = int(np.isnan(matrix).sum())
    if n_missing:
        raise InputError(f"could not read '{path}' as {NAMES[kind]} of counts: {n_missing:,} empty values (the file "
                         f"may be truncated).")
    row_names = pd.Index(df.index.astype(str), name=None)
    col_names = pd.Index(values.columns.astype(str))
    genes_are_rows, reason = _orientation(row_names, col_names)
    labels = labels.set_axis(row_names, axis=0)
    if genes_are_rows:
        var = labels.copy()
        for column in labels.columns:  # an extra gene column of Ensembl IDs is the ID column prepare looks for
            if "gene_ids" not in var and _known_share(labels[column].astype(str), ids_only=True) > 0.5:
                var["gene_ids"] = labels[column].astype(str).values
        adata = AnnData(sp.csr_matrix(matrix.T), obs=pd.DataFrame(index=col_names), var=var)
    else:
        adata = AnnData(sp.csr_matrix(matrix), obs=labels, var=pd.DataFrame(index=col_names))
    orientation = "genes × cells" if genes_are_rows else "cells × genes"
    warnings.warn(f"{path.name}: read as {orientation} ({reason})"
                  + ("; transposed to cells × genes" if genes_are_rows else ""), stacklevel=4)  # read_cells's caller
    return adata, {"orientation": orientation, "reason": reason}


def _first_word(column: pd.Series) -> str:
    return str(column[pd.to_numeric(column, errors="coerce").isna()].iloc[0])


def _known_share(names: pd.Index | pd.Series, ids_only: bool = False) -> float:
    """Share of names that are Ensembl gene IDs or (unless ``ids_only``) vocabulary symbols in any case."""
    names = pd.Index(np.asarray(names, dtype=str))
    if len(names) == 0:
        return 0.0
    known = np.asarray(names.str.match(ENSEMBL.pattern), dtype=bool)
    if not ids_only:
        known |= np.asarray(names.str.upper().isin(_vocabulary_symbols()), dtype=bool)
    return float(known.mean())


def _vocabulary_symbols() -> set[str]:
    from grnformer.data.genes import GeneVocab

    return {str(s).upper() for s in GeneVocab.default().symbols}


def _orientation(row_names: pd.Index, col_names: pd.Index) -> tuple[bool, str]:
    """(genes are the rows, why) by which axis's labels are known gene names (see the module's decision)."""
    rows, cols = _known_share(row_names), _known_share(col_names)
    counts = (f"{rows:.0%} of the {len(row_names):,} row names and {cols:.0%} of the {len(col_names):,} column "
              f"names are known gene names")
    if max(rows, cols) < MIN_GENE_SHARE:
        return False, (f"{counts}, so neither axis is clearly genes; assumed rows are cells, the AnnData convention. "
                       f"If rows are genes, transpose the table")
    return rows > cols, counts
