"""Scoring a predicted network against a ground truth.

The candidate edges are every (regulator, target) pair of the evaluation universe except self-pairs (a gene that is
both a row and a column is never scored against itself):

- ``universe="all"``: every row gene of the prediction × every column gene;
- ``universe="tf"``: rows restricted to transcription factors (``var['is_tf']`` of a network AnnData, else ``tfs=``,
  else the organism's TF list), columns unchanged;
- ``universe="truth_regulators"``: rows restricted to genes that regulate at least one target in the truth (the
  convention of McCalla et al. and BEELINE: only TFs the gold standard has measured are scored).

A candidate is positive when the truth holds that edge. Names are located by `data.input.gene_names.positions`
(exact symbol, else ignoring case), the rule head selection's `edge_matrix` uses too. The metrics themselves
(auprc, ap, auroc, epr, precision_at_k, random_precision, odds_ratio) are defined once, in `grnformer.edge_metrics`,
which head selection uses too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from grnformer.data.input.gene_names import positions
from grnformer.edge_metrics import rank_metrics
from grnformer.errors import InputError

UNIVERSES = ("all", "tf", "truth_regulators")


def _network_parts(pred, regulators: Sequence[str] | None, targets: Sequence[str] | None):
    """(scores as a dense float matrix or CSR, row names, column names, TF names or None) of any accepted input."""
    if hasattr(pred, "varp") and hasattr(pred, "var_names"):
        if "GRN" not in pred.varp:
            raise InputError("the network AnnData has no varp['GRN'] (rows = regulators, columns = targets)")
        names = pred.var_names.astype(str).to_numpy()
        tfs = names[pred.var["is_tf"].to_numpy(dtype=bool)] if "is_tf" in pred.var else None
        return pred.varp["GRN"], names, names, tfs
    if isinstance(pred, pd.DataFrame):
        return (pred.to_numpy(dtype=np.float64), pred.index.astype(str).to_numpy(),
                pred.columns.astype(str).to_numpy(), None)
    mat = pred if sp.issparse(pred) else np.asarray(pred, dtype=np.float64)
    if mat.ndim != 2:
        raise InputError(f"a predicted network must be a 2-D matrix, got shape {mat.shape}")
    n_r, n_c = mat.shape
    if regulators is None and targets is None and n_r == n_c:
        regulators = targets = [f"g{i}" for i in range(n_r)]
    regulators = [f"r{i}" for i in range(n_r)] if regulators is None else list(regulators)
    targets = [f"c{i}" for i in range(n_c)] if targets is None else list(targets)
    if (len(regulators), len(targets)) != mat.shape:
        raise InputError(f"matrix shape {mat.shape} does not match "
                         f"{len(regulators)} regulators × {len(targets)} targets")
    return mat, np.asarray(regulators, dtype=str), np.asarray(targets, dtype=str), None


def _truth_matrix(truth, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, set]:
    """Boolean truth over the prediction's rows × columns, and the set of regulators the truth names."""
    from grnformer.bench.truths import GroundTruth

    if isinstance(truth, GroundTruth):
        return truth.to_matrix(rows, cols), set(truth.regulators)
    if isinstance(truth, pd.DataFrame) and truth.dtypes.map(lambda t: t == bool).all():
        r, c = positions(rows, truth.index), positions(cols, truth.columns)
        m = np.zeros((len(rows), len(cols)), dtype=bool)
        m[np.ix_(r >= 0, c >= 0)] = truth.to_numpy(dtype=bool)[np.ix_(r[r >= 0], c[c >= 0])]
        return m, set(truth.index[truth.any(axis=1)])
    m = truth.toarray() if sp.issparse(truth) else np.asarray(truth)
    if m.shape != shape:
        raise InputError(f"truth matrix shape {m.shape} differs from the prediction's {shape}")
    m = m.astype(bool)
    return m, set(rows[m.any(axis=1)])


def _candidates(pred, truth, universe: str, tfs: Iterable[str] | None, organism: str | None,
                regulators, targets) -> tuple[np.ndarray, np.ndarray, dict]:
    """Flattened candidate scores and labels, and a description of the universe."""
    if universe not in UNIVERSES:
        raise InputError(f"universe must be one of {UNIVERSES}, not {universe!r}")
    mat, rows, cols, net_tfs = _network_parts(pred, regulators, targets)
    labels, truth_regs = _truth_matrix(truth, rows, cols, mat.shape)
    keep_rows = np.ones(len(rows), dtype=bool)
    if universe == "tf":
        if tfs is None:
            tfs = net_tfs
        if tfs is None:
            from grnformer.bench.truths import GroundTruth
            from grnformer.data.genes import tf_symbols

            org = organism or (truth.organism if isinstance(truth, GroundTruth) else None)
            if org is None:
                raise InputError("universe='tf' needs the TFs: give tfs=, organism=, or a network with var['is_tf']")
            tfs = tf_symbols(org)
        keep_rows = positions(rows, list(tfs)) >= 0
    elif universe == "truth_regulators":
        keep_rows = positions(rows, list(truth_regs)) >= 0
    r_idx = np.flatnonzero(keep_rows)
    sub = mat[r_idx]
    scores = (sub.toarray() if sp.issparse(sub) else np.asarray(sub)).astype(np.float64)
    lab = labels[r_idx]
    valid = np.ones(scores.shape, dtype=bool)
    col_pos = pd.Index(cols).get_indexer(rows[r_idx])
    self_rows = np.flatnonzero(col_pos >= 0)
    valid[self_rows, col_pos[self_rows]] = False
    info = {"universe": universe, "n_regulators": int(len(r_idx)), "n_targets": int(len(cols)),
            "self_pairs_excluded": int(len(self_rows))}
    return scores[valid], lab[valid], info


def score_network(pred, truth, universe: str = "all", tfs: Iterable[str] | None = None,
                  organism: str | None = None, regulators: Sequence[str] | None = None,
                  targets: Sequence[str] | None = None, curve: bool = False) -> dict:
    """Score a predicted network against a ground truth (see the module docstring for every definition).

    ``pred``: a network AnnData (``varp['GRN']``, rows = regulators, columns = targets, ``var_names`` symbols), a
    DataFrame (index regulators, columns targets), or a matrix with ``regulators``/``targets`` names.
    ``truth``: a `GroundTruth`, a boolean DataFrame, or a boolean matrix aligned with ``pred``.
    With ``curve=True`` the result also holds ``precision``, ``recall``, ``fpr``, ``tpr`` arrays (one point per
    distinct score, plus the start) for plotting.
    """
    scores, labels, info = _candidates(pred, truth, universe, tfs, organism, regulators, targets)
    return {**info, "n_true": int(labels.sum()), "n_candidates": int(scores.size),
            **rank_metrics(scores, labels, curve=curve)}
