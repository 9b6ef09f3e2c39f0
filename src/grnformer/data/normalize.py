"""Log-normalisation of counts: log1p of each cell's counts scaled to 10,000 (the convention of scanpy's
normalize_total + log1p), for sparse cell × gene matrices."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

TARGET_SUM = 1e4


def log_normalize(x: sp.spmatrix, depth: np.ndarray | None = None) -> sp.csr_matrix:
    """log1p(counts / depth × 1e4) per cell; `depth` defaults to each row's total (zero rows stay zero)."""
    x = sp.csr_matrix(x, dtype=np.float32, copy=True)
    depth = np.asarray(x.sum(axis=1)).ravel() if depth is None else np.asarray(depth, dtype=np.float64)
    x = sp.csr_matrix(sp.diags((TARGET_SUM / np.maximum(depth, 1)).astype(np.float32)) @ x)
    x.data = np.log1p(x.data)
    return x
