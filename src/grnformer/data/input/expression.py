"""What the layers above read off a prepared AnnData: its organism, and its counts per 10,000 on a log scale.

Both rules are written once here so that the tasks' gene sets, the baselines' matrix and the perturbation ground
truths cannot drift apart (a different scale factor or depth would silently change every method's input).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from grnformer.data.genes import organism_id
from grnformer.data.input.prepare import ORGANISM_COLUMN
from grnformer.errors import InputError

SCALE = 1e4


def organism_of(adata: AnnData, organism: str | None = None, required: bool = False) -> str | None:
    """The organism term of a dataset: ``organism`` when given (name or term), else ``obs[ORGANISM_COLUMN]`` of its
    first cell (`prepare` sets it, one organism per dataset). None when neither says; InputError if ``required``."""
    if organism:
        return organism_id(organism)
    column = adata.obs.get(ORGANISM_COLUMN)
    if column is not None and len(column):
        return str(column.iloc[0])
    if required:
        raise InputError(f"the dataset needs obs['{ORGANISM_COLUMN}'] (grnformer.data.input.prepare sets it).")
    return None


def counts_per_10k(x: sp.spmatrix | np.ndarray, allow_empty: bool = True) -> sp.csr_matrix:
    """Each cell's counts scaled to sum 10,000 over the columns given (float64 CSR).

    A cell with no counts stays all zero, or, with ``allow_empty=False``, is an InputError (a caller whose
    statistics would divide by it)."""
    x = x.tocsr() if sp.issparse(x) else sp.csr_matrix(np.asarray(x))
    depth = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
    if not allow_empty and (depth <= 0).any():
        raise InputError(f"{int((depth <= 0).sum())} cells have no counts; remove them first.")
    return (sp.diags(SCALE / np.where(depth > 0, depth, 1.0)) @ x).tocsr()


def log_per_10k(x: sp.spmatrix | np.ndarray, allow_empty: bool = True) -> sp.csr_matrix:
    """log1p of `counts_per_10k`: the usual scale for variability, correlation and mean-expression ranks."""
    scaled = counts_per_10k(x, allow_empty)
    scaled.data = np.log1p(scaled.data)
    return scaled
