"""kNN-pooled expression ("metacells"): each cell's expression averaged with its nearest neighbours before a
correlation network is read from it.

Why: a per-type network in an atlas is built from 30–300 cells, where most counts of a regulator are dropouts. Two
genes that rise together across a type's states then correlate weakly cell by cell, because each zero is sampling
noise. Averaging a cell with the cells most like it (neighbours in a PCA of the log-normalised data, so the
neighbourhood is chosen from thousands of genes at once) removes much of that noise while keeping the variation
between states that a network is read from. The price: neighbouring rows share cells, so the pooled rows are not
independent, and with k close to the number of cells every row tends to the same mean.

Arrays in, arrays out (no AnnData, no model), as `networks.from_data`.
"""

from __future__ import annotations

import numpy as np

from grnformer.errors import InputError

N_PCS = 30  # PCA components the neighbours are found in (fewer when the data hold fewer cells or genes)


def pooled_expression(x: np.ndarray, k: int, n_pcs: int = N_PCS, seed: int = 0) -> np.ndarray:
    """[cells, G] each row of ``x`` (log-normalised expression, cells × genes) replaced by the mean of itself and
    its ``k`` nearest neighbours (Euclidean distance in the first ``n_pcs`` principal components of ``x``)."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"expression must be a cells × genes matrix; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("expression holds NaN or infinite values: pool log-normalised values")
    n_cells, n_genes = x.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n_cells:
        raise InputError(f"k (neighbours pooled with each cell) must be an integer from 1 to {n_cells - 1} "
                         f"(the number of cells minus one); got {k!r}")
    pcs = PCA(n_components=min(n_pcs, n_cells - 1, n_genes), random_state=seed).fit_transform(x)
    # each cell is its own first neighbour; a duplicate cell may take that place, which pools the same values
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(pcs).kneighbors(pcs)
    return x[idx].mean(axis=1).astype(np.float32)
