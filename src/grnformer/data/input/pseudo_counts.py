"""Pseudo-counts rebuilt from normalised values, and the checks that tell counts from other values.

Public benchmark sets often ship log2(TPM+1) or log-normalised values instead of counts; `with_pseudo_counts`
turns them back into counts in a layer `prepare` reads first. `value_problems` is the one test of "raw counts"
that `prepare` also uses on X, the counts layers and .raw.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from grnformer.errors import InputError

COUNTS_FROM = ("log2p1", "log1p", "tpm")  # normalised values `with_pseudo_counts` can turn back into counts
DEFAULT_PSEUDO_DEPTH = 10_000.0  # counts per cell of rebuilt pseudo-counts: a typical 10x cell's library size
PSEUDO_LAYER = "counts"
PSEUDO_COUNTS_KEY = "grnformer_counts_from"
_MAX_LOG = {"log2p1": 40.0, "log1p": 28.0}  # log values beyond these are no log of a count or TPM


def with_pseudo_counts(adata: AnnData, counts_from: str, depth: float = DEFAULT_PSEUDO_DEPTH,
                       source: str = "AnnData") -> AnnData:
    """A copy of ``adata`` with pseudo-counts rebuilt from the normalised values in X, in layer 'counts'.

    Many public benchmark sets (BEELINE's ExpressionData.csv among them) hold log2(TPM+1) or log-normalised values
    instead of counts. The inverse transform ('log2p1': 2^x - 1, 'log1p': e^x - 1, 'tpm': as is) is scaled so that
    every cell holds ``depth`` counts and rounded. X is kept as given; ``uns['grnformer_counts_from']`` records the
    conversion, and `prepare` reads the layer and copies the record into its report. Warns that the model was
    trained on raw counts."""
    if counts_from not in COUNTS_FROM:
        raise InputError(f"counts_from must be one of {', '.join(COUNTS_FROM)}; got '{counts_from}'.")
    if not depth > 0:
        raise InputError(f"the pseudo-count depth must be > 0 (got {depth}).")
    if PSEUDO_LAYER in adata.layers and PSEUDO_COUNTS_KEY not in adata.uns:
        raise InputError(f"{source} already has a layer '{PSEUDO_LAYER}', which prepare reads as the raw counts; "
                         f"leave counts_from out to use it, or delete the layer.")
    x = sp.csr_matrix(adata.X, dtype=np.float64)
    x.eliminate_zeros()
    nnz_in = int(x.nnz)
    bad = [p for p in value_problems(x) if p[0] != "non-integer"]
    if bad:
        raise InputError(f"{source}: counts_from='{counts_from}' needs non-negative finite values in X: "
                         f"{describe_problems(bad, adata.obs_names, adata.var_names)}. Scaled or centred values "
                         "(negative numbers) cannot be turned back into counts.")
    top = float(x.data.max()) if x.nnz else 0.0
    if counts_from in _MAX_LOG and top > _MAX_LOG[counts_from]:
        raise InputError(f"{source}: X holds values up to {top:g}, too large for {counts_from} values (a log2 "
                         f"of TPM stays under ~20): are they counts or TPM? Use counts_from='tpm' or none.")
    if counts_from == "log2p1":
        x.data = np.exp2(x.data) - 1.0
    elif counts_from == "log1p":
        x.data = np.expm1(x.data)
    totals = np.asarray(x.sum(axis=1)).ravel()
    x = sp.diags(np.where(totals > 0, depth / np.maximum(totals, 1e-300), 0.0)) @ x
    x.data = np.rint(x.data)
    x = sp.csr_matrix(x, dtype=np.float32)
    x.eliminate_zeros()
    out = adata.copy()
    out.layers[PSEUDO_LAYER] = x
    out.uns[PSEUDO_COUNTS_KEY] = {"transform": counts_from, "depth": float(depth), "source": "X",
                                  "median_input_total": float(np.median(totals)),
                                  "n_nonzero_in": nnz_in, "n_nonzero_out": int(x.nnz)}
    warnings.warn(f"{source}: counts_from='{counts_from}': rebuilt pseudo-counts from the normalised values in X "
                  f"(inverse transform, each cell scaled to {depth:,.0f} counts, rounded). The model was trained on "
                  "raw counts; results on pseudo-counts are an approximation.", stacklevel=2)
    return out


def value_problems(matrix) -> list[tuple[str, int, int, int, float]]:
    """Why a matrix is not raw counts: one phrase per kind of bad value, with its first occurrence (row, col)."""
    if sp.issparse(matrix):
        m = matrix if matrix.format in ("csr", "csc") else sp.csr_matrix(matrix)
        values = np.asarray(m.data)
    else:
        m = None
        values = np.asarray(matrix).ravel()
    if values.dtype.kind in "iub":
        checks = [("negative", values < 0)] if values.dtype.kind == "i" else []
    else:
        finite = np.isfinite(values)
        checks = [("non-finite (NaN or infinite)", ~finite),
                  ("negative", finite & (values < 0)),
                  ("non-integer", finite & (values != np.rint(values)))]
    problems = []
    for kind, mask in checks:
        n = int(np.count_nonzero(mask))
        if not n:
            continue
        k = int(np.argmax(mask))
        if m is None:
            row, col = np.unravel_index(k, np.shape(matrix))
        else:
            major = int(np.searchsorted(m.indptr, k, side="right") - 1)
            row, col = (major, m.indices[k]) if m.format == "csr" else (m.indices[k], major)
        problems.append((kind, n, int(row), int(col), float(values[k])))
    return problems


def describe_problems(problems: list[tuple[str, int, int, int, float]], obs_names: pd.Index,
                      var_names: pd.Index) -> str:
    """The problems of `value_problems` as one clause for an error message."""
    return "; ".join(f"{n:,} {kind} values (e.g. {value:g} at cell '{obs_names[row]}', gene '{var_names[col]}')"
                     for kind, n, row, col, value in problems)
