"""A known TF→target network (a prior) laid over a network's edges: `grn --prior FILE`.

No prior ships with grnformer: no pinned PyPI package carries a TF→target database or motif evidence (decoupler and
omnipath fetch theirs at run time), so the user brings one, e.g. a perturbation screen's or ChIP-seq's edges for
their cell type. The prior re-ranks, it adds no edge: each network's edges get their rank among its nonzero
edges, scaled to (0, 1], plus ``weight`` when the prior holds them. Weight 0 leaves the order as it is; weight 1
or more puts every prior edge ahead of every other one, ordered by the data among themselves (a pruned network
with the rest behind it). The default weight is chosen on development pairs whose truths share no source with
the prior (benchmarks/bench_priors.py, record priors.json); a prior scored on truths built from the same
experiments would be judged on its own answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from grnformer.data.input.gene_names import current_symbols, edge_matrix
from grnformer.data.resources import file_sha256
from grnformer.errors import InputError

# A first line whose two names are one of these pairs (any case) is a header, not an edge.
HEADER_WORDS = {("regulator", "target"), ("source", "target"), ("tf", "target"), ("gene1", "gene2"),
                ("from", "to")}


@dataclass(frozen=True)
class Prior:
    """A prior's edges as the file gives them (regulator, target), where it came from and its file digest."""

    edges: pd.DataFrame
    path: str
    sha256: str

    def known(self, names: Sequence[str], organism: str) -> np.ndarray:
        """[len(names), len(names)] bool: the prior's edges among ``names`` (a network's genes), its symbols first
        brought to the organism's current ones (the one gene-name owner, `data.input.gene_names`)."""
        regulators = current_symbols(self.edges["regulator"].tolist(), organism)[0]
        targets = current_symbols(self.edges["target"].tolist(), organism)[0]
        return edge_matrix(zip(regulators, targets), list(names))


def read_prior(path: str | Path) -> Prior:
    """A prior from a table of regulator → target edges (csv, tsv or txt, gzip allowed): the first two columns,
    a first line of column names skipped (see HEADER_WORDS), further columns ignored. InputError when the file is
    missing or holds no edge."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prior: no file at {path}.")
    try:
        table = pd.read_csv(path, sep=_separator(path), engine="python", header=None, dtype=str, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as err:
        raise InputError(f"prior: {path} is not a table of regulator, target edges ({err}).") from None
    if table.shape[1] < 2:
        raise InputError(f"prior: {path} needs two columns, regulator and target; it has {table.shape[1]}.")
    edges = table.iloc[:, :2].dropna().astype(str).apply(lambda c: c.str.strip())
    edges.columns = ["regulator", "target"]
    if len(edges) and tuple(edges.iloc[0].str.lower()) in HEADER_WORDS:
        edges = edges.iloc[1:]
    edges = edges[(edges["regulator"] != "") & (edges["target"] != "")].drop_duplicates().reset_index(drop=True)
    if edges.empty:
        raise InputError(f"prior: {path} holds no regulator, target edge.")
    return Prior(edges, str(path), file_sha256(path))


def _separator(path: Path) -> str:
    """The column separator of the first line that is not a comment: a tab, else a comma, else white space."""
    import gzip

    with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as f:
        line = next((ln for ln in f if ln.strip() and not ln.startswith("#")), "")
    return "\t" if "\t" in line else "," if "," in line else r"\s+"


def lay_prior(net: np.ndarray, known: np.ndarray, weight: float) -> np.ndarray:
    """The network re-ranked by the prior: each nonzero edge's rank among the nonzero edges (by magnitude,
    scaled to (0, 1]) plus ``weight`` where ``known``, with the edge's sign; zero edges stay zero (a row that may
    not regulate gains nothing)."""
    if net.shape != known.shape:
        raise ValueError(f"network {net.shape} and prior {known.shape} differ in shape")
    magnitude = np.abs(net)
    nonzero = magnitude > 0
    out = np.zeros(net.shape, dtype=np.float32)
    if nonzero.any():
        rank = rankdata(magnitude[nonzero]) / nonzero.sum()
        out[nonzero] = np.sign(net[nonzero]) * (rank + weight * known[nonzero])
    return out
