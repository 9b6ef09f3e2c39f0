"""The one owner of gene-set choice: the most variable genes, the most expressed, the genes expressed in most
cells, and 'hvg+tfs' (the variable genes with the TFs among the next ones: BEELINE's 'TFs + N'). The tasks, the
baselines of `bench` and the demo all choose their genes here: `select_genes` on prepared cells, `variable_genes`
(the most variable TFs first, then the most variable genes) on any log-normalised matrix, both ranked by
`variable_order`."""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from grnformer.data.genes import tf_symbols
from grnformer.data.input.expression import log_per_10k
from grnformer.errors import InputError
from grnformer.inference.option_fields import GENE_SETS, MAX_MISSING_GENES

if TYPE_CHECKING:  # prepared loads torch; the ranking below is wanted without it (bench baselines, the demo)
    from grnformer.inference.prepared import Prepared


def select_genes(prep: Prepared, genes: Sequence[str] | str, n_genes: int | None,
                 max_missing: float = MAX_MISSING_GENES) -> np.ndarray:
    """Prepared columns of a gene set, in rank order.

    A list names the genes. 'hvg': the most variable genes (Seurat-style normalised dispersion of log-normalised
    counts, genes seen in at least 3 cells). 'most_expressed': highest mean log-normalised expression.
    'hvg+tfs': 'hvg' plus the transcription factors among the next n_genes most variable genes (so every TF
    among the 2·n_genes most variable is in). 'random_expressed': the genes expressed in the most cells (the network
    genes of a genome-wide run whose contexts are drawn at random among each cell's expressed genes)."""
    if not isinstance(genes, str):
        from grnformer.inference.prepared import resolve_gene_names

        return resolve_gene_names(prep, list(genes), max_missing)
    prep.genes_not_found = []
    if genes not in GENE_SETS:
        raise InputError(f"genes must be a list of gene names or one of {', '.join(GENE_SETS)}; got '{genes}'.")
    x = prep.adata.X
    n_cells_expr = np.bincount(x.indices, minlength=prep.adata.n_vars)
    candidates = np.flatnonzero(n_cells_expr >= min(3, prep.n_cells))
    if n_genes is None or n_genes < 2:
        raise InputError(f"n_genes must be at least 2 (got {n_genes}).")
    if n_genes > len(candidates):
        warnings.warn(f"n_genes={n_genes:,} asked for, but only {len(candidates):,} of the data's "
                      f"{prep.adata.n_vars:,} vocabulary genes are expressed in >= 3 of its {prep.n_cells:,} cells: "
                      f"using those {len(candidates):,}.", stacklevel=3)
    n = min(n_genes, len(candidates))
    if genes == "random_expressed":
        order = np.argsort(-n_cells_expr[candidates], kind="stable")
        return candidates[order[:n]]
    logx = log_per_10k(x[:, candidates])
    mean = np.asarray(logx.mean(axis=0)).ravel()
    if genes == "most_expressed":
        return candidates[np.argsort(-mean, kind="stable")[:n]]
    ranked = candidates[variable_order(logx)]
    if genes == "hvg+tfs":  # BEELINE's 'TFs + N': the TFs among the next n variable genes join the top n
        symbols = prep.adata.var["symbol"].astype(str).to_numpy()
        nxt = ranked[n:2 * n]
        return np.concatenate([ranked[:n], nxt[np.isin(symbols[nxt], list(tf_symbols(prep.organism)))]])
    return ranked[:n]


def variable_order(logx: sp.spmatrix | np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Columns of log-normalised expression (cells × genes), most variable first: Seurat's normalised dispersion
    (variance/mean of the expm1 values, z-scored within 20 bins of mean log expression), so that a gene is variable
    for its expression level rather than for being highly expressed."""
    logx = sp.csr_matrix(logx)
    mean = np.asarray(logx.mean(axis=0)).ravel()
    expm1 = logx.copy()
    expm1.data = np.expm1(expm1.data)
    m = np.asarray(expm1.mean(axis=0)).ravel()
    var = np.asarray(expm1.multiply(expm1).mean(axis=0)).ravel() - m ** 2
    disp = np.log(np.maximum(var, 1e-12) / np.maximum(m, 1e-12))
    bins = pd.cut(mean, bins=n_bins, labels=False)
    z = np.zeros_like(disp)
    for b in np.unique(bins):
        sel = bins == b
        sd = disp[sel].std(ddof=1) if sel.sum() > 1 else 0.0
        z[sel] = (disp[sel] - disp[sel].mean()) / sd if sd > 0 else 0.0
    return np.argsort(-z, kind="stable")


def variable_genes(logx: sp.spmatrix | np.ndarray, symbols: Sequence[str], n_genes: int,
                   tfs: Collection[str] = frozenset(), n_tfs: int = 0, min_cells: int = 3) -> list[str]:
    """Symbols of ``n_genes`` genes detected in at least ``min_cells`` cells: the ``n_tfs`` most variable of ``tfs``
    first (so TF-row scoring has regulators), then the most variable others (`variable_order`). A symbol on
    several columns counts once, at its first column. Deterministic."""
    x = sp.csr_matrix(logx)
    symbols = np.asarray([str(g) for g in symbols], dtype=object)
    if len(symbols) != x.shape[1]:
        raise InputError(f"{len(symbols)} gene symbols for a matrix of {x.shape[1]} genes.")
    detected = np.asarray((x > 0).sum(axis=0)).ravel()
    cols = np.flatnonzero((detected >= min_cells) & ~pd.Index(symbols).duplicated())
    ranked = symbols[cols[variable_order(x[:, cols])]] if len(cols) else symbols[:0]
    chosen = [g for g in ranked if g in tfs][:max(n_tfs, 0)]
    taken = set(chosen)
    return chosen + [g for g in ranked if g not in taken][:max(n_genes - len(chosen), 0)]


def parse_gene_option(value: Sequence[str] | str | None, keywords: Sequence[str]) -> Sequence[str] | str | None:
    """A CLI gene option: a keyword, a file of names (one per line or comma-separated), or 'A,B,C'."""
    if not isinstance(value, str) or value in keywords:
        return value
    try:
        is_file = Path(value).is_file()
    except OSError:  # a long comma-separated list is no file name the system accepts
        is_file = False
    text = Path(value).read_text() if is_file else value
    names = [g.strip() for g in re.split(r"[,\s]+", text) if g.strip()]
    if not names:
        raise InputError(f"no gene names in '{value}'.")
    return names


def chunk_count(n_genes: np.ndarray | int, size: int) -> np.ndarray:
    """How many parts `chunk_genes` makes of ``n_genes`` genes (elementwise for an array): at least one."""
    return np.maximum(1, -(-np.asarray(n_genes) // size))


def chunk_genes(tokens: np.ndarray, size: int) -> list[np.ndarray]:
    """Split a gene list into the fewest near-equal parts of at most ``size`` genes (one context each)."""
    return list(np.array_split(tokens, int(chunk_count(len(tokens), size))))
