"""Scoring a predicted network against a ground truth.

The candidate edges are every (regulator, target) pair of the evaluation universe except self-pairs (a gene that is
both a row and a column is never scored against itself):

- ``universe="all"``: every row gene of the prediction × every column gene;
- ``universe="tf"``: rows restricted to transcription factors (``var['is_tf']`` of a network AnnData, else ``tfs=``,
  else the organism's TF list), columns unchanged;
- ``universe="truth_regulators"``: rows restricted to genes that regulate at least one target in the truth (the
  convention of McCalla et al. and BEELINE: only TFs the gold standard has measured are scored).

A candidate is positive when the truth holds that edge. Scores are sorted from high to low; tied scores form one
block, so every curve takes a point only at each distinct score (as scikit-learn does) and no metric depends on the
order of tied pairs. NaN scores count as the lowest score. Metrics:

- ``ap``: average precision, sum over thresholds of (ΔRecall × Precision) — the area under the step PR curve that
  starts at recall 0; identical to ``sklearn.metrics.average_precision_score``.
- ``auprc``: the exact area under the PR curve when each tied block (and each single pair) is crossed by linear
  interpolation in (TP, FP) space — the expected path for a random order inside a tie (Davis & Goadrich 2006), in
  closed form. It starts at recall 0 with the precision of the top block. It equals ``ap`` up to the interpolation
  inside blocks; it is ``random_precision`` for a constant prediction (where the step curve's ``ap`` is too) and 1
  for a perfect one.
- ``auroc``: area under the ROC curve, ties counted one half (= ``sklearn.metrics.roc_auc_score``).
- ``precision_at_k``: precision among the K top-scored candidates, K = number of true edges; a tie that straddles
  position K contributes its expected number of positives (its positive fraction × the places it fills).
- ``epr``: early precision ratio = ``precision_at_k`` / ``random_precision``.
- ``random_precision``: n_true / n_candidates (what a random ranking scores).
- ``odds_ratio``: odds ratio of the 2×2 table (in top K or not × true or not), without a continuity correction:
  0 when no true edge is in the top K, inf when every top-K pair is true or every true edge is in it. The
  Haldane–Anscombe +0.5 is deliberately not used: with ~10⁶ candidates and ~10² true edges it alone turns zero hits
  into an odds ratio of ~25 (0.5·N/K²), i.e. it reports enrichment where there is none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

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
        return pred.to_numpy(dtype=np.float64), pred.index.astype(str).to_numpy(), pred.columns.astype(str).to_numpy(), None
    mat = pred if sp.issparse(pred) else np.asarray(pred, dtype=np.float64)
    if mat.ndim != 2:
        raise InputError(f"a predicted network must be a 2-D matrix, got shape {mat.shape}")
    n_r, n_c = mat.shape
    if regulators is None and targets is None and n_r == n_c:
        regulators = targets = [f"g{i}" for i in range(n_r)]
    regulators = [f"r{i}" for i in range(n_r)] if regulators is None else list(regulators)
    targets = [f"c{i}" for i in range(n_c)] if targets is None else list(targets)
    if (len(regulators), len(targets)) != mat.shape:
        raise InputError(f"matrix shape {mat.shape} does not match {len(regulators)} regulators × {len(targets)} targets")
    return mat, np.asarray(regulators, dtype=str), np.asarray(targets, dtype=str), None


def _truth_matrix(truth, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, set]:
    """Boolean truth over the prediction's rows × columns, and the set of regulators the truth names."""
    from grnformer.bench.truths import GroundTruth

    if isinstance(truth, GroundTruth):
        return truth.to_matrix(rows, cols), set(truth.regulators)
    if isinstance(truth, pd.DataFrame) and truth.dtypes.map(lambda t: t == bool).all():
        m = truth.reindex(index=rows, columns=cols, fill_value=False).to_numpy(dtype=bool)
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
        keep_rows = np.isin(rows, list(tfs))
    elif universe == "truth_regulators":
        keep_rows = np.isin(rows, list(truth_regs))
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


def _blocks(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true and false positives at the end of each block of tied scores (high to low)."""
    s = np.where(np.isnan(scores), -np.inf, scores)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], labels[order].astype(np.int64)
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(y)[ends].astype(np.float64)
    fp = (ends + 1).astype(np.float64) - tp
    return tp, fp


def _interpolated_area(tp: np.ndarray, fp: np.ndarray, n_pos: float) -> float:
    """Exact area under the PR curve with linear (TP, FP) interpolation inside each block (closed form)."""
    a = np.r_[0.0, tp[:-1]]          # true positives before the block
    n = a + np.r_[0.0, fp[:-1]]      # pairs before the block
    t, f = tp - a, fp - (n - a)      # what the block adds
    has = t > 0
    a, n, t, f = a[has], n[has], t[has], f[has]
    c = (t + f) / t
    area = t / c
    start = n > 0
    # ∫_0^t (a + x) / (n + c x) dx = t/c + (a - n/c)/c · ln(1 + c t / n), for n > 0
    area[start] += (a[start] - n[start] / c[start]) / c[start] * np.log1p((t[start] + f[start]) / n[start])
    return float(area.sum() / n_pos)


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
    n = int(scores.size)
    n_true = int(labels.sum())
    out: dict = {**info, "n_true": n_true, "n_candidates": n}
    if n == 0 or n_true == 0 or n_true == n:
        nan = float("nan")
        out.update(auprc=nan, ap=nan, auroc=nan, epr=nan, precision_at_k=nan, odds_ratio=nan,
                   random_precision=n_true / n if n else nan)
        if curve:
            out.update(precision=np.array([]), recall=np.array([]), fpr=np.array([]), tpr=np.array([]))
        return out
    n_neg = n - n_true
    tp, fp = _blocks(scores, labels)
    precision, recall = tp / (tp + fp), tp / n_true
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    tpr, fpr = np.r_[0.0, recall], np.r_[0.0, fp / n_neg]
    auroc = float(np.trapezoid(tpr, fpr))

    k = n_true
    size = tp + fp
    b = int(np.searchsorted(size, k))              # block that contains position k
    tp_prev = tp[b - 1] if b else 0.0
    size_prev = size[b - 1] if b else 0.0
    tp_k = tp_prev + (k - size_prev) * (tp[b] - tp_prev) / (size[b] - size_prev)
    p_at_k = tp_k / k
    random_precision = n_true / n
    a, bb = tp_k, k - tp_k                          # true / false among the top K
    c, d = n_true - tp_k, n_neg - (k - tp_k)        # true / false outside it
    with np.errstate(divide="ignore", invalid="ignore"):
        odds_ratio = float(np.float64(a * d) / np.float64(bb * c)) if a > 0 else 0.0
    out.update(auprc=_interpolated_area(tp, fp, n_true), ap=ap, auroc=auroc, epr=float(p_at_k / random_precision),
               precision_at_k=float(p_at_k), random_precision=float(random_precision),
               odds_ratio=odds_ratio)
    if curve:
        out.update(precision=np.r_[precision[0], precision], recall=np.r_[0.0, recall], fpr=fpr, tpr=tpr)
    return out
