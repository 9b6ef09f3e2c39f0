"""Networks from data rather than attention, and the rank fusion that combines networks (one owner of each rule;
`bench.baselines` scores its Pearson and Spearman baselines with `abs_correlation` too).

Nothing here reads files, runs the model or knows about AnnData: arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import rankdata


def abs_correlation(x: np.ndarray) -> np.ndarray:
    """[G, G] |Pearson r| between the columns of ``x`` [cells, G] (constant columns score 0). The sign
    (activation or repression) is not what the ground truths record."""
    z = np.asarray(x, dtype=np.float64)
    z = z - z.mean(0)
    norm = np.sqrt((z ** 2).sum(0))
    z = z / np.where(norm > 0, norm, np.inf)
    return np.abs(z.T @ z).astype(np.float32)


def abs_spearman(x: np.ndarray) -> np.ndarray:
    """[G, G] |Spearman rho|: |Pearson r| of each column's ranks (ties averaged)."""
    return abs_correlation(rankdata(x, axis=0))


def abs_cosine(e: np.ndarray) -> np.ndarray:
    """[G, G] |cosine similarity| between the rows of ``e`` [G, d] (zero rows score 0)."""
    e = np.asarray(e, dtype=np.float64)
    norm = np.linalg.norm(e, axis=1, keepdims=True)
    e = e / np.where(norm > 0, norm, np.inf)
    return np.abs(e @ e.T).astype(np.float32)


def fuse_ranks(parts: Mapping[str, np.ndarray], weights: Mapping[str, float], regulators: np.ndarray
               ) -> np.ndarray:
    """Weighted mean of each part's ranks over the candidate edges (``regulators`` rows × every column, self-pairs
    excluded), each rank scaled to (0, 1] (ties averaged). Other entries are 0.

    Ranks make components on different scales comparable, and a rank mean is what wins ensembles of network
    methods (the DREAM5 'wisdom of crowds' result) without a fitted model."""
    names = [n for n in parts if weights.get(n, 0) > 0]
    if not names:
        raise ValueError("rank fusion needs at least one part with a positive weight")
    shape = parts[names[0]].shape
    cand = np.zeros(shape, dtype=bool)
    cand[regulators] = True
    np.fill_diagonal(cand, False)
    total = sum(weights[n] for n in names)
    fused = np.zeros(int(cand.sum()), dtype=np.float64)
    for n in names:
        scores = np.asarray(parts[n], dtype=np.float64)[cand]
        fused += weights[n] / total * rankdata(np.nan_to_num(scores, nan=-np.inf)) / len(scores)
    out = np.zeros(shape, dtype=np.float32)
    out[cand] = fused
    return out


def parse_weights(text: str | Mapping[str, float], known: tuple[str, ...]) -> dict[str, float]:
    """'attention:0.3,pearson:0.7' (or a mapping) -> {name: weight}; names must be ``known`` and weights >= 0
    with a positive sum. Raises ValueError with the reason (the options turn it into an InputError)."""
    if isinstance(text, Mapping):
        pairs = [(str(k), float(v)) for k, v in text.items()]
    else:
        pairs = []
        for item in [t.strip() for t in str(text).split(",") if t.strip()]:
            name, sep, value = item.partition(":")
            try:
                pairs.append((name.strip(), float(value)))
            except ValueError:
                raise ValueError(f"'{item}' is not name:weight") from None
            if not sep:
                raise ValueError(f"'{item}' is not name:weight")
    unknown = [n for n, _ in pairs if n not in known]
    if unknown:
        raise ValueError(f"unknown fusion component(s) {unknown}; known: {', '.join(known)}")
    if any(w < 0 for _, w in pairs) or not sum(w for _, w in pairs) > 0:
        raise ValueError("fusion weights must be >= 0 with a positive sum")
    return dict(pairs)
