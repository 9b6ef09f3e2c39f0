"""What sets a group of cells apart in its network (`grn --groupby G --specificity ...`), and the scores that say so.

A network of one cell type's cells alone (specificity 'none') is the co-variation *within* the type. The genes that
make a type what it is, its lineage TFs, are expressed in nearly all of its cells and barely vary there, so they do
not lead it; the same hub TFs lead every type (issue 31: the two largest PBMC3k types shared 9 of their 10
strongest regulators). Three ways to bring out what is specific, measured in `benchmarks/bench_specificity.py`:

- 'share' (pearson/spearman): the group's share of the all-cells network. With each gene's values (Spearman: its
  ranks over all cells) standardised over all N cells, the all-cells correlation splits exactly over groups that
  partition the cells (law of total covariance): corr = Σ_g [W_g + n_g/N · d_g d_gᵀ], W_g the group's
  co-variation around its own mean (summed over its cells, / N) and d_g its mean offset from all cells. The share
  network of g is |W_g| + n_g/N · u uᵀ with u = max(d_g, 0): co-variation within the group plus co-elevation in
  it, i.e. both genes higher in the group than over all cells. Only elevation counts: a gene lower in the group
  (a monocyte TF in T cells) says what the group is not. A regulator's out-strength there is large when it is
  expressed higher in the group and moves with the group's genes: the lineage TFs (chosen on PBMC3k).
- 'contrast': each edge of the group's plain network minus its mean over the other groups (any method).
- 'zscore': each edge's z-score over the groups' plain networks (any method; an edge equal in every group is 0).

Arrays in, arrays out (no AnnData, no model): `networks.grn` forms the networks with them, the benchmark and the
demo score them with `regulator_strength` / `top_regulators` / `top_overlap`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from grnformer.errors import InputError
from grnformer.networks.methods import METHODS

CELL_SCALES = tuple(m.name for m in METHODS.values() if m.correlation)  # the methods whose correlation 'share' splits


def check_groups(groups: Mapping[str, np.ndarray]) -> None:
    """InputError unless there are two groups with cells to compare."""
    if sum(len(rows) > 0 for rows in groups.values()) < 2:
        raise InputError(f"a specificity compares groups of cells: it needs at least two groups with cells (got "
                         f"{len(groups)}: {', '.join(map(str, groups)) or 'none'}).")


def standardised(x: np.ndarray, method: str) -> np.ndarray:
    """[cells, G] each column on the scale of ``method``'s correlation (Spearman: its ranks), mean 0 and variance 1
    over the cells (constant columns 0), so that zᵀz / N is the method's correlation matrix."""
    if method not in CELL_SCALES:
        raise InputError(f"specificity 'share' splits the correlation of {' or '.join(CELL_SCALES)}; got '{method}'.")
    z = rankdata(x, axis=0) if method == "spearman" else np.asarray(x, dtype=np.float64)
    z = z - z.mean(0)
    sd = z.std(0)
    return z / np.where(sd > 0, sd, np.inf)


def group_part(z: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A group's part of the correlation zᵀz / N of standardised columns ``z`` [N, G]: (W [G, G], d [G]), W its
    cells' co-variation around their own mean (/ N) and d = their mean × sqrt(n_g / N), so that over groups that
    partition the cells Σ (W + d dᵀ) = zᵀz / N."""
    zg = z[member]
    mean = zg.mean(0) if len(zg) else np.zeros(z.shape[1])
    centred = zg - mean
    return centred.T @ centred / len(z), mean * np.sqrt(len(zg) / len(z))


def share_network(within: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The 'share' network of a group from its `group_part`: |W| + u uᵀ, u = max(d, 0) (see the module)."""
    up = np.clip(offset, 0, None)
    return np.abs(within) + np.outer(up, up)


def over_groups(nets: Mapping[str, np.ndarray], kind: str) -> dict[str, np.ndarray]:
    """'contrast' (each group's edge minus its mean over the other groups) or 'zscore' (over the groups; population
    standard deviation, 0 where every group has the same edge) of the groups' plain networks."""
    names = list(nets)
    stack = np.stack([_dense(nets[g]) for g in names])
    if kind == "contrast":
        rest = (stack.sum(0)[None] - stack) / max(len(names) - 1, 1)
        return {g: stack[i] - rest[i] for i, g in enumerate(names)}
    if kind == "zscore":
        sd = stack.std(0)
        return {g: np.where(sd > 0, (stack[i] - stack.mean(0)) / np.where(sd > 0, sd, 1), 0.0)
                for i, g in enumerate(names)}
    raise InputError(f"specificity over groups is 'contrast' or 'zscore'; got '{kind}'.")


def specific_matrices(kind: str, plain: Mapping[str, np.ndarray], member: Mapping[str, np.ndarray],
                      x: np.ndarray | None = None, method: str = "spearman") -> dict[str, np.ndarray]:
    """Each group's specific network [G, G] (self-pairs 0). 'share' reads ``x`` [N, G], the expression of all the
    cells (the groups' and any others), and ``member`` (per group, [N] bool); 'contrast' and 'zscore' read the
    groups' ``plain`` networks."""
    if kind == "share":
        z = standardised(x, method)
        out = {g: share_network(*group_part(z, member[g])) for g in plain}
    else:
        out = over_groups(plain, kind)
    for m in out.values():
        np.fill_diagonal(m, 0)
    return {g: m.astype(np.float32) for g, m in out.items()}


def _dense(net: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.array(net.toarray() if sp.issparse(net) else net, dtype=np.float64)


def regulator_strength(net: np.ndarray | sp.spmatrix, regulators: np.ndarray, names: np.ndarray) -> pd.Series:
    """Out-strength of each regulator row (the sum of its scores over every other gene), strongest first: the
    issue's regulator score, for plain and specific networks alike."""
    m = _dense(net)
    np.fill_diagonal(m, 0)
    rows = np.flatnonzero(np.asarray(regulators, dtype=bool))
    strength = pd.Series(m[rows].sum(axis=1), index=np.asarray(names)[rows].astype(str))
    return strength.sort_values(ascending=False, kind="stable")


def top_regulators(net: np.ndarray | sp.spmatrix, regulators: np.ndarray, names: np.ndarray, k: int = 10
                   ) -> list[str]:
    """The ``k`` regulators of largest out-strength."""
    return regulator_strength(net, regulators, names).index[:k].tolist()


def top_overlap(a: list[str], b: list[str]) -> int:
    """How many regulators two top lists share."""
    return len(set(a) & set(b))
