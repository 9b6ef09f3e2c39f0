"""The one writer of a network file: its h5ad and, when asked, its edge list (regulator, target, score) beside it
as CSV. Every network file (`grn`'s, the demo's, the bench's) is written here, so they share one layout and one
atomic publication (`inference.outputs.write_many`): both files are written as parts and renamed only when both
are complete, so an interrupted run leaves a whole network or none."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from grnformer.inference.outputs import h5ad_writer, write_many


def strongest_edges(net: AnnData, max_edges: int | None = None) -> pd.DataFrame:
    """The ``max_edges`` strongest edges of varp["GRN"] over all rows (all: None) as (regulator, target, score),
    strongest first; zero scores and self-pairs left out (`exports.edge_table` is the per-regulator export)."""
    grn = net.varp["GRN"]
    names = net.var_names.to_numpy()
    if sp.issparse(grn):
        coo = grn.tocoo()
        rows, cols, scores = coo.row, coo.col, np.asarray(coo.data, dtype=np.float32)
    else:
        dense = np.asarray(grn)
        rows, cols = np.nonzero(dense)
        scores = dense[rows, cols].astype(np.float32)
    keep = (rows != cols) & (scores != 0)
    rows, cols, scores = rows[keep], cols[keep], scores[keep]
    if max_edges is not None and len(scores) > max_edges:
        top = np.argpartition(-scores, max_edges - 1)[:max_edges]
        rows, cols, scores = rows[top], cols[top], scores[top]
    order = np.lexsort((cols, rows, -scores))  # by score, ties in matrix order so output is reproducible
    return pd.DataFrame({"regulator": names[rows[order]], "target": names[cols[order]], "score": scores[order]})


def csv_writer(net: AnnData, max_edges: int | None) -> Callable[[Path], None]:
    """Writes the network's `strongest_edges` as CSV into a part file."""
    def write(part: Path) -> None:
        strongest_edges(net, max_edges).to_csv(part, index=False, float_format="%.6g")
    return write


def write_network(net: AnnData, path: str | Path, csv: bool = False, csv_max_edges: int | None = None
                  ) -> list[Path]:
    """Write the network to ``path`` (h5ad) and, with ``csv``, its strongest ``csv_max_edges`` edges (all: None)
    to the same name with .csv, published together. Returns the files written."""
    path = Path(path)
    writers = {path: h5ad_writer(net)}
    if csv:
        writers[path.with_suffix(".csv")] = csv_writer(net, csv_max_edges)
    return write_many(writers)
