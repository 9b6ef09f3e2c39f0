"""Attention-head selection: which heads, with which non-negative weights, score a ground truth's edges.

Each head's map gives every gene pair a score; those scores are the features of a linear model that predicts
whether the pair is a true edge. The weights are constrained to be non-negative — a head can only count *for*
an edge, so the combined network stays a weighted sum of attention maps (ranked like one) and the fit cannot
exploit a head by flipping its sign. sklearn's LogisticRegression has no sign constraint, so we solve a
class-balanced least-squares problem with `scipy.optimize.nnls`:

- features are z-scored per head on the training pairs (heads live on different scales) and the intercept is
  removed by centring, which is exact for least squares; raw-scale weights are w / std, so ranking by the fitted
  model equals ranking by Σ_h w_h · map_h;
- positives and negatives weigh the same in total (negatives are subsampled to at most ``max_negatives`` first);
- the split is of candidate pairs ('edges') or of regulators ('regulators', stricter: a held-out regulator's
  row was never seen in training); metrics are reported on the held-out split only, beside the plain mean of
  all heads on the same pairs.

Selections are saved as JSON and reused with `grn(..., heads=FILE)` on other data. A selection records what its
maps were made with (`fitted_with`; which options count and why: `networks.grn_options.SELECTION_REFUSES` /
`_WARNS`), and grn compares those with its own options.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.optimize import nnls

from grnformer.data.input.gene_names import edge_matrix
from grnformer.edge_metrics import rank_metrics
from grnformer.errors import InputError

FORMAT = "grnformer-heads"
FORMAT_VERSION = 2  # 2: fitted_with (version 1 recorded the correction alone)
SPLITS = ("edges", "regulators")


def head_names(n_layers: int, n_heads: int) -> list[str]:
    """Names of the cube's heads in order: layer-major, 'L<layer>H<head>' (0-based)."""
    return [f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)]


@dataclass
class HeadSelection:
    """Non-negative head weights [n_layers, n_heads] summing to 1, the direction their maps were read in, the
    held-out metrics of the fit, and ``fitted_with``: the settings of the network it was fitted on (the scalars of
    its uns['grn']; grn compares those `networks.grn_options.SELECTION_REFUSES` / `_WARNS` name). Empty for a
    selection made by hand, whose settings grn cannot check."""

    n_layers: int
    n_heads: int
    direction: str
    weights: np.ndarray
    metrics: dict[str, Any] = field(default_factory=dict)
    fitted_with: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64).reshape(self.n_layers, self.n_heads)
        if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise InputError("head weights must be finite, non-negative and not all zero.")
        if self.direction not in ("kq", "qk"):
            raise InputError(f"head selection direction must be 'kq' or 'qk'; got '{self.direction}'.")
        self.weights = w / w.sum()

    def selected(self) -> list[tuple[int, int, float]]:
        """(layer, head, weight) of every head with a positive weight, heaviest first."""
        l, h = np.nonzero(self.weights)
        order = np.argsort(-self.weights[l, h], kind="stable")
        return [(int(l[i]), int(h[i]), float(self.weights[l[i], h[i]])) for i in order]

    def named_weights(self) -> dict[str, float]:
        """{'L0H1': 0.75, …} of the selected heads, heaviest first: the form a network's uns['grn'] stores
        (h5ad can hold a mapping of numbers, not a list of mappings)."""
        return {f"L{l}H{h}": w for l, h, w in self.selected()}

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "n_layers": self.n_layers,
                "n_heads": self.n_heads, "direction": self.direction, "fitted_with": self.fitted_with,
                "heads": [{"layer": l, "head": h, "weight": w} for l, h, w in self.selected()],
                "metrics": self.metrics}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HeadSelection:
        """A selection from its JSON form; older files load with what they record (version 1: the correction,
        or nothing), and grn warns about the rest."""
        if d.get("format") != FORMAT:
            raise InputError("not a grnformer head selection (expected format 'grnformer-heads').")
        try:
            n_layers, n_heads = int(d["n_layers"]), int(d["n_heads"])
            w = np.zeros((n_layers, n_heads))
            for item in d["heads"]:
                w[int(item["layer"]), int(item["head"])] = float(item["weight"])
            fitted = dict(d.get("fitted_with") or {})
            if d.get("correction") is not None:  # version 1
                fitted.setdefault("correction", d["correction"])
            return cls(n_layers, n_heads, str(d["direction"]), w, dict(d.get("metrics", {})), fitted)
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise InputError(f"malformed head selection ({type(err).__name__}: {err}).") from err

    def save(self, path: str | Path) -> Path:
        from grnformer.inference.outputs import write_json

        return write_json(self.to_dict(), path)


def load_heads(source: str | Path | Mapping[str, Any]) -> HeadSelection:
    """A head selection from a JSON file or its dict form."""
    if isinstance(source, Mapping):
        return HeadSelection.from_dict(source)
    path = Path(source)
    if not path.is_file():
        raise InputError(f"head selection file not found: {path}")
    try:
        return HeadSelection.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON ({err}).") from err


# ------------------------------------------------------------------------------------------- ground truth

def truth_matrix(truth: np.ndarray | pd.DataFrame | Iterable[tuple[str, str]], genes: Sequence[str]
                 ) -> np.ndarray:
    """A ground truth as a [G, G] boolean matrix over ``genes`` (rows = regulators).

    Accepts a boolean matrix already aligned with ``genes``, a DataFrame whose first two columns are
    (regulator, target), or an iterable of (regulator, target) pairs; edges with genes outside ``genes`` are
    ignored (matching is case-insensitive)."""
    G = len(genes)
    if isinstance(truth, np.ndarray) and truth.ndim == 2:
        if truth.shape != (G, G):
            raise InputError(f"ground-truth matrix has shape {truth.shape}; expected ({G}, {G}).")
        return truth.astype(bool)
    return edge_matrix(truth, genes)


def cube_of(net: AnnData) -> tuple[np.ndarray, int, int, str]:
    """(cube [n_layers·n_heads, G, G], n_layers, n_heads, direction) of a network made with keep_heads=True."""
    if "grn_heads" not in net.uns:
        raise InputError("the network has no per-head cube: run grn(..., keep_heads=True).")
    names = list(net.uns["grn_head_names"])
    n_layers = 1 + max(int(n[1:n.index("H")]) for n in names)
    return np.asarray(net.uns["grn_heads"]), n_layers, len(names) // n_layers, str(net.uns["grn"]["direction"])


# ---------------------------------------------------------------------------------------------- fitting

def _split(G: int, truth: np.ndarray, split: str, train_fraction: float, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    """Boolean [G, G] masks of training and held-out candidate pairs (self-pairs excluded from both)."""
    off_diag = ~np.eye(G, dtype=bool)
    if split == "edges":
        train = (rng.random((G, G)) < train_fraction) & off_diag
    else:
        regs = np.flatnonzero(truth.any(axis=1))
        others = np.setdiff1d(np.arange(G), regs)
        rows = np.zeros(G, dtype=bool)  # split true regulators evenly, then the others
        for group in (regs, others):
            chosen = rng.permutation(group)[: int(round(train_fraction * len(group)))]
            rows[chosen] = True
        train = rows[:, None] & off_diag
    return train, ~train & off_diag


def check_split(split: str, train_fraction: float) -> None:
    """InputError for a split or training fraction `select_heads` cannot use (checked before any model run)."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {', '.join(SPLITS)}; got '{split}'.")
    if not 0 < train_fraction < 1:
        raise InputError(f"train_fraction must be in (0, 1); got {train_fraction}.")


def _auc(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """auprc (interpolated), ap (step curve) and auroc, as `grnformer.edge_metrics` defines them."""
    m = rank_metrics(scores, labels)
    return {k: m[k] for k in ("auprc", "ap", "auroc")}


def select_heads(cube: np.ndarray, truth: np.ndarray | pd.DataFrame | Iterable[tuple[str, str]],
                 n_layers: int, n_heads: int, direction: str, genes: Sequence[str] | None = None,
                 split: str = "edges", train_fraction: float = 0.5, max_negatives: int = 200_000,
                 seed: int = 0) -> HeadSelection:
    """Fit non-negative head weights on a training split of a ground truth's edges; score on the rest.

    cube: [n_layers·n_heads, G, G] per-head scores (rows = regulators, as `grn(keep_heads=True)` stores them).
    truth: boolean [G, G] matrix, or edges named like ``genes``. The returned selection's metrics hold the
    held-out auprc / ap / auroc (`grnformer.edge_metrics`) of the selection and of the mean of all heads, with the
    held-out positive rate."""
    cube = np.asarray(cube, dtype=np.float32)
    n_total, G = cube.shape[0], cube.shape[1]
    if cube.shape != (n_total, G, G) or n_total != n_layers * n_heads:
        raise InputError(f"the cube has shape {cube.shape}; expected ({n_layers * n_heads}, G, G).")
    check_split(split, train_fraction)
    if not isinstance(truth, np.ndarray) and genes is None:
        raise InputError("an edge-list ground truth needs the network's gene names (genes=...).")
    truth = truth_matrix(truth, genes if genes is not None else [str(i) for i in range(G)])
    rng = np.random.default_rng(seed)
    train, test = _split(G, truth, split, train_fraction, rng)
    for name, mask in (("training", train), ("held-out", test)):
        if not (truth & mask).any() or not (~truth & mask).any():
            raise InputError(f"the {name} split has no true edges (or no negatives): {int(truth.sum())} true "
                             f"edges among {G} genes are too few to select heads.")

    features = cube.reshape(n_total, -1).T  # [G*G, n_heads] view, pairs in row-major order
    labels = truth.ravel()
    pos = np.flatnonzero(train.ravel() & labels)
    neg = np.flatnonzero(train.ravel() & ~labels)
    if len(neg) > max_negatives:
        neg = rng.choice(neg, max_negatives, replace=False)
    idx = np.concatenate([pos, neg])
    x = features[idx].astype(np.float64)
    y = labels[idx].astype(np.float64)
    sample_w = np.where(y > 0, 0.5 / len(pos), 0.5 / len(neg))
    mean = sample_w @ x
    std = np.sqrt(sample_w @ (x - mean) ** 2)
    std[std == 0] = 1.0
    z = (x - mean) / std
    root = np.sqrt(sample_w)[:, None]
    coef, _ = nnls(root * (z - sample_w @ z), root[:, 0] * (y - sample_w @ y))
    raw = coef / std
    fallback = not (raw > 0).any()
    if fallback:  # no head scores true edges above the rest: keep every head, equally
        raw = np.ones(n_total)

    held = test.ravel()
    y_test = labels[held]
    metrics = {
        "split": split, "train_fraction": train_fraction, "seed": seed, "n_genes": G,
        "n_true_edges": int(truth.sum()), "n_train_positive": len(pos), "n_train_negative_used": len(neg),
        "n_test_pairs": int(held.sum()), "n_test_positive": int(y_test.sum()),
        "test_random_precision": float(y_test.mean()),
        "selected": _auc(features[held] @ raw, y_test),
        "mean_of_heads": _auc(features[held].mean(axis=1), y_test),
        "no_informative_head": fallback,
    }
    return HeadSelection(n_layers, n_heads, direction, raw.reshape(n_layers, n_heads), metrics)


def select_heads_from_network(net: AnnData, truth: np.ndarray | pd.DataFrame | Iterable[tuple[str, str]],
                              **kwargs: Any) -> HeadSelection:
    """`select_heads` on a network AnnData made with ``keep_heads=True`` (genes = its var_names), recording the
    settings of that network (the scalars of uns['grn'], as plain Python for the JSON)."""
    cube, n_layers, n_heads, direction = cube_of(net)
    selection = select_heads(cube, truth, n_layers, n_heads, direction, genes=list(net.var_names), **kwargs)
    selection.fitted_with = {k: v.item() if isinstance(v, np.generic) else v for k, v in net.uns["grn"].items()
                             if v is None or isinstance(v, (str, int, float, bool, np.generic))}
    return selection
