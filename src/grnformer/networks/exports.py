"""Networks as edge tables that the next tool reads: decoupler's and pySCENIC's layouts (the one owner).

A grnformer network file keeps GRnnData's layout (varp['GRN'], rows = regulators, columns = targets); this module
turns it into a long table with each regulator's ``top_k`` strongest targets, so tables stay small:

- ``decoupler``: columns ``source, target, weight`` — the network argument of decoupler's methods (``dc.mt.ulm``
  and others). The weight is signed where the method has a sign: a perturb network's varp['GRN_effect']
  (positive = the regulator's loss lowers the target, i.e. it activates it, decoupler's convention); otherwise it
  is the score of varp['GRN'] (attention networks have no sign: every weight is positive).
- ``scenic``: columns ``TF, target, importance`` — pySCENIC's adjacency table (the output of its ``grn`` step,
  the input of ``ctx``); importance = varp['GRN'] (for perturb networks |effect|).

Edges are ranked by varp['GRN'] within each regulator; self-pairs and zero scores are left out. Which rows count
as regulators (``regulators``): 'auto' — the rows marked var['is_regulator'] when the file has that column, else
those marked var['is_tf'] when any are, else all; 'tfs' — var['is_tf']; 'all' — every row.
``top_edges`` is shared with the network explorer (`networks.explorer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from grnformer.errors import InputError

FORMATS: dict[str, tuple[str, str, str]] = {
    "decoupler": ("source", "target", "weight"),
    "scenic": ("TF", "target", "importance"),
}
REGULATOR_CHOICES = ("auto", "tfs", "all")
DEFAULT_TOP_K = 50


@dataclass
class TopEdges:
    """Each regulator's strongest targets: row/column indices into the network's genes, score (varp['GRN']) and,
    where the network has them, the signed effect and the stability of each edge."""

    rows: np.ndarray
    cols: np.ndarray
    score: np.ndarray
    effect: np.ndarray | None = None
    stability: np.ndarray | None = None


def read_network(path: str | Path) -> AnnData:
    """A network h5ad (varp['GRN']); a missing file or another kind of file is an InputError."""
    import anndata

    path = Path(path)
    if not path.is_file():
        raise InputError(f"network file not found: {path}")
    try:
        net = anndata.read_h5ad(path)
    except Exception as err:  # h5py / anndata raise many types for a file that is not an h5ad
        raise InputError(f"'{path}' is not an h5ad file ({type(err).__name__}: {err}).") from err
    check_network(net, str(path))
    return net


def check_network(net: AnnData, name: str = "the network") -> None:
    if "GRN" not in net.varp:
        raise InputError(f"{name} holds no network: varp['GRN'] is missing (write one with `grnformer grn`).")


def check_top_k(top_k: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InputError(f"top_k must be a whole number >= 1 (targets kept per regulator); got {top_k!r}.")
    return int(top_k)


def regulator_mask(net: AnnData, regulators: str = "auto") -> np.ndarray:
    """[n_genes] bool: the rows exported as regulators (see the module docstring)."""
    if regulators not in REGULATOR_CHOICES:
        raise InputError(f"regulators must be one of {', '.join(REGULATOR_CHOICES)}; got '{regulators}'.")
    var = net.var
    if regulators == "all":
        return np.ones(net.n_vars, dtype=bool)
    if regulators == "auto" and "is_regulator" in var:
        return var["is_regulator"].to_numpy(dtype=bool)
    tf = var["is_tf"].to_numpy(dtype=bool) if "is_tf" in var else np.zeros(net.n_vars, dtype=bool)
    if regulators == "tfs" and not tf.any():
        raise InputError("regulators 'tfs': no row of this network is marked as a transcription factor "
                         "(var['is_tf']); use regulators 'all'.")
    return tf if tf.any() else np.ones(net.n_vars, dtype=bool)


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=np.float32)


def top_edges(net: AnnData, top_k: int = DEFAULT_TOP_K, regulators: str = "auto") -> TopEdges:
    """Each regulator row's ``top_k`` highest-scoring targets (self-pairs and zero scores left out), strongest
    first overall, ties in matrix order."""
    check_network(net)
    top_k = check_top_k(top_k)
    grn = _dense(net.varp["GRN"])
    rows_kept = np.flatnonzero(regulator_mask(net, regulators))
    sub = grn[rows_kept].copy()
    sub[np.arange(len(rows_kept)), rows_kept] = 0.0  # self-pairs
    k = min(top_k, net.n_vars)
    if k < net.n_vars:
        part = np.argpartition(-sub, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(net.n_vars), (len(rows_kept), 1))
    rows = np.repeat(rows_kept, part.shape[1])
    cols = part.ravel()
    score = sub[np.repeat(np.arange(len(rows_kept)), part.shape[1]), cols]
    keep = score != 0
    rows, cols, score = rows[keep], cols[keep], score[keep]
    order = np.lexsort((cols, rows, -score))
    rows, cols, score = rows[order], cols[order], score[order]
    extra = {}
    for key, name in (("GRN_effect", "effect"), ("GRN_stability", "stability")):
        if key in net.varp:
            extra[name] = _dense(net.varp[key])[rows, cols]
    return TopEdges(rows, cols, score, **extra)


def edge_table(net: AnnData, format: str = "decoupler", top_k: int = DEFAULT_TOP_K, regulators: str = "auto"
               ) -> pd.DataFrame:
    """The network as a long table in ``format``'s layout (see the module docstring)."""
    if format not in FORMATS:
        raise InputError(f"unknown export format '{format}'; choose one of {', '.join(FORMATS)}.")
    edges = top_edges(net, top_k, regulators)
    names = net.var_names.to_numpy().astype(str)
    value = edges.effect if format == "decoupler" and edges.effect is not None else edges.score
    source, target, weight = FORMATS[format]
    return pd.DataFrame({source: names[edges.rows], target: names[edges.cols],
                         weight: np.asarray(value, dtype=np.float64)})


def _separator(path: Path) -> str:
    return "," if path.suffix.lower() == ".csv" else "\t"


def table_writer(table: pd.DataFrame):
    def write(part: Path, dest: Path) -> None:
        table.to_csv(part, sep=_separator(dest), index=False, float_format="%.6g")
    return write


def write_edges(net: AnnData, path: str | Path, format: str = "decoupler", top_k: int = DEFAULT_TOP_K,
                regulators: str = "auto") -> Path:
    """Write ``edge_table`` atomically: comma-separated for a .csv name, tab-separated otherwise (.tsv, .txt)."""
    return write_tables({Path(path): edge_table(net, format, top_k, regulators)})[0]


def write_tables(tables: Mapping[Path, pd.DataFrame]) -> list[Path]:
    """Every table written as a part first, all published together (`grnformer.atomic`)."""
    from grnformer.inference.outputs import write_many

    return write_many({dest: (lambda part, t=t, d=dest: table_writer(t)(part, d)) for dest, t in tables.items()})


def export_file(network: str | Path, out: str | Path, format: str = "decoupler", top_k: int = DEFAULT_TOP_K,
                regulators: str = "auto") -> list[Path]:
    """CLI entry (`grnformer export`): one network h5ad → one table at ``out``; a directory of network h5ads
    (a per-group `grn` output) → ``out`` a directory with ``<name>.tsv`` per network (``.csv`` beside none).
    Everything is read and checked before anything is written; the tables are published together."""
    from grnformer.inference.outputs import check_writable

    if format not in FORMATS:
        raise InputError(f"unknown export format '{format}'; choose one of {', '.join(FORMATS)}.")
    check_top_k(top_k)
    network, out = Path(network), Path(out)
    if network.is_dir():
        files = sorted(network.glob("*.h5ad"))
        if not files:
            raise InputError(f"'{network}' holds no network h5ad files.")
        if out.exists() and not out.is_dir():
            raise InputError(f"'{network}' is a directory of networks: the output '{out}' must be a directory.")
        check_writable((out if out.is_dir() else out.parent) / "probe.tsv")
        tables = {out / f"{f.stem}.tsv": edge_table(read_network(f), format, top_k, regulators) for f in files}
        out.mkdir(exist_ok=True)
    else:
        check_writable(out)
        tables = {out: edge_table(read_network(network), format, top_k, regulators)}
    return write_tables(tables)
