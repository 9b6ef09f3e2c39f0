"""Edges against a truth: the one meaning of every network metric, and the edge-list reader.

Below `tasks` and `bench` (it imports neither), so that head selection (`networks.heads`) and the benchmark
(`bench.network_scores.score_network`) report the same number under the same name. Scores are ranked from high to low;
tied scores form one block, so every curve takes a point only at each distinct score (as scikit-learn does) and
no metric depends on the order of tied pairs. NaN scores count as the lowest score.

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

from pathlib import Path

import numpy as np
import pandas as pd

from grnformer.errors import InputError

METRICS = ("auprc", "ap", "auroc", "epr", "precision_at_k", "random_precision", "odds_ratio")


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


def _top_k(tp: np.ndarray, fp: np.ndarray, k: int) -> float:
    """Expected true positives among the k top-ranked candidates (a straddling tie counts pro rata)."""
    size = tp + fp
    b = int(np.searchsorted(size, k))              # block that contains position k
    tp_prev = tp[b - 1] if b else 0.0
    size_prev = size[b - 1] if b else 0.0
    return float(tp_prev + (k - size_prev) * (tp[b] - tp_prev) / (size[b] - size_prev))


def rank_metrics(scores: np.ndarray, labels: np.ndarray, curve: bool = False) -> dict:
    """Every metric of the module docstring for flat candidate ``scores`` and boolean ``labels``.

    NaN metrics when there is no candidate, no positive or no negative. With ``curve`` also ``precision``,
    ``recall``, ``fpr``, ``tpr`` arrays (one point per distinct score, plus the start)."""
    scores, labels = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels, dtype=bool).ravel()
    n, n_true = int(scores.size), int(labels.sum())
    if n == 0 or n_true == 0 or n_true == n:
        out = {m: float("nan") for m in METRICS}
        out["random_precision"] = n_true / n if n else float("nan")
        if curve:
            out.update(precision=np.array([]), recall=np.array([]), fpr=np.array([]), tpr=np.array([]))
        return out
    n_neg = n - n_true
    tp, fp = _blocks(scores, labels)
    precision, recall = tp / (tp + fp), tp / n_true
    tpr, fpr = np.r_[0.0, recall], np.r_[0.0, fp / n_neg]
    tp_k = _top_k(tp, fp, n_true)
    random_precision = n_true / n
    a, b = tp_k, n_true - tp_k                      # true / false among the top K
    c, d = n_true - tp_k, n_neg - (n_true - tp_k)   # true / false outside it
    with np.errstate(divide="ignore", invalid="ignore"):
        odds_ratio = float(np.float64(a * d) / np.float64(b * c)) if a > 0 else 0.0
    out = {"auprc": _interpolated_area(tp, fp, n_true), "ap": float(np.sum(np.diff(np.r_[0.0, recall]) * precision)),
           "auroc": float(np.trapezoid(tpr, fpr)), "epr": float(tp_k / n_true / random_precision),
           "precision_at_k": float(tp_k / n_true), "random_precision": float(random_precision),
           "odds_ratio": odds_ratio}
    if curve:
        out.update(precision=np.r_[precision[0], precision], recall=np.r_[0.0, recall], fpr=fpr, tpr=tpr)
    return out


def read_edge_list(path: str | Path) -> pd.DataFrame:
    """A ground truth file: CSV/TSV whose first two columns are regulator and target (a header is optional)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ground-truth file not found: {path}")
    try:
        edges = pd.read_csv(path, sep=None, engine="python", header=None, dtype=str)
    except (ValueError, pd.errors.ParserError) as err:
        raise InputError(f"could not read {path} as a CSV/TSV edge list ({err}).") from err
    if edges.shape[1] < 2 or len(edges) == 0:
        raise InputError(f"{path} needs two columns (regulator, target) and at least one edge.")
    if {str(edges.iloc[0, 0]).lower(), str(edges.iloc[0, 1]).lower()} & {"regulator", "source", "tf", "target"}:
        edges = edges.iloc[1:]
    return edges.iloc[:, :2].set_axis(["regulator", "target"], axis=1).reset_index(drop=True)
