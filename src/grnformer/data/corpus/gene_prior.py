"""A gene-embedding prior from the corpus itself: genes that are expressed together start close together.

The reference model starts gene tokens from protein-language-model vectors, which nothing offers offline here.
The corpus offers co-expression instead: a truncated SVD of the log-normalised gene × cell matrix gives each gene
a vector (its left singular vector scaled by the singular values) whose dot products approximate how the genes
co-vary over cells. The vectors are rescaled so that their rows have the norm of the model's default
initialisation (N(0, 1) entries), so training sees the same input scale either way. Genes the corpus hardly
holds get no prior (`found` is False): they keep their random start.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD

from grnformer.data.corpus.store import CellDataset
from grnformer.data.input.expression import log_per_10k


def coexpression_embedding(cells: CellDataset, indices: np.ndarray, vocab_size: int, dim: int,
                           max_cells: int = 50_000, min_cells: int = 5, seed: int = 0
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(vectors [vocab_size, dim] float32, found [vocab_size] bool) from up to `max_cells` of the cells
    `indices` of `cells` (the training split: validation cells stay unseen)."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(np.asarray(indices), size=min(max_cells, len(indices)), replace=False))
    records = [cells[int(i)] for i in picked]
    indptr = np.concatenate([[0], np.cumsum([len(r.genes) for r in records])])
    x = sp.csr_matrix((np.concatenate([r.counts for r in records]), np.concatenate([r.genes for r in records]),
                       indptr), shape=(len(records), vocab_size), dtype=np.float32)
    x = log_per_10k(x)
    found = np.asarray((x > 0).sum(axis=0)).ravel() >= min_cells
    genes = x[:, found].T.tocsr()  # genes x cells
    k = min(dim, genes.shape[0] - 1, genes.shape[1] - 1)
    svd = TruncatedSVD(n_components=k, algorithm="randomized", random_state=seed)
    vectors = svd.fit_transform(genes)  # U * S
    vectors *= np.sqrt(dim) / max(float(np.linalg.norm(vectors, axis=1).mean()), 1e-12)
    out = np.zeros((vocab_size, dim), dtype=np.float32)
    out[np.flatnonzero(found), :k] = vectors
    return out, found
