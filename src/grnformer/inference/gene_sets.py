"""The one owner of gene-set choice: the most variable genes, the most expressed, the genes expressed in most
cells, and 'hvg+tfs' (the variable genes with the TFs among the next ones: BEELINE's 'TFs + N'). The tasks, the
baselines of `bench` and the demo all choose their genes here: `select_genes` on prepared cells, `variable_genes`
(the most variable TFs first, then the most variable genes) on any log-normalised matrix, both ranked by
`variable_order`."""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
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
    n_expressed = np.bincount(x.indices, minlength=prep.adata.n_vars)
    candidates = expressed_candidates(n_expressed, prep.n_cells, n_genes)
    if genes == "random_expressed":
        return candidates[np.argsort(-n_expressed[candidates], kind="stable")[:n_genes]]
    return genes_from_moments(GeneMoments.of(x[:, candidates]), candidates, genes, n_genes,
                              prep.adata.var["symbol"].astype(str).to_numpy(), prep.organism)


def expressed_candidates(n_expressed: np.ndarray, n_cells: int, n_genes: int | None) -> np.ndarray:
    """Columns a gene-set keyword chooses among: genes expressed in at least 3 cells (warned when fewer than
    ``n_genes``)."""
    candidates = np.flatnonzero(n_expressed >= min(3, n_cells))
    if n_genes is None or n_genes < 2:
        raise InputError(f"n_genes must be at least 2 (got {n_genes}).")
    if n_genes > len(candidates):
        warnings.warn(f"n_genes={n_genes:,} asked for, but only {len(candidates):,} of the data's "
                      f"{len(n_expressed):,} vocabulary genes are expressed in >= 3 of its {n_cells:,} cells: "
                      f"using those {len(candidates):,}.", stacklevel=4)
    return candidates


@dataclass
class GeneMoments:
    """Per-gene sums over cells that 'hvg' and 'most_expressed' rank by: of the log-normalised value (each cell
    normalised by its depth over the candidate genes), of its expm1 and of that squared (Seurat's dispersion).
    Sums add over chunks of cells, so a file too large for memory ranks its genes in a streamed pass
    (`networks.streaming_correlation`)."""

    n_cells: int
    log_sum: np.ndarray
    lin_sum: np.ndarray
    lin_sq_sum: np.ndarray

    @classmethod
    def of(cls, counts: sp.spmatrix) -> GeneMoments:
        """Moments of raw counts of the candidate genes (cells × candidates)."""
        logx = log_per_10k(counts)
        lin = logx.copy()
        lin.data = np.expm1(lin.data)
        return cls(logx.shape[0], np.asarray(logx.sum(axis=0)).ravel(), np.asarray(lin.sum(axis=0)).ravel(),
                   np.asarray(lin.multiply(lin).sum(axis=0)).ravel())

    def __add__(self, other: GeneMoments) -> GeneMoments:
        return GeneMoments(self.n_cells + other.n_cells, self.log_sum + other.log_sum,
                           self.lin_sum + other.lin_sum, self.lin_sq_sum + other.lin_sq_sum)


def genes_from_moments(moments: GeneMoments, candidates: np.ndarray, genes: str, n_genes: int,
                       symbols: np.ndarray, organism: str) -> np.ndarray:
    """Columns of 'hvg', 'hvg+tfs' or 'most_expressed' (see `select_genes`) from the candidates' `GeneMoments`."""
    n = min(n_genes, len(candidates))
    mean = moments.log_sum / moments.n_cells
    if genes == "most_expressed":
        return candidates[np.argsort(-mean, kind="stable")[:n]]
    m = moments.lin_sum / moments.n_cells
    ranked = candidates[dispersion_order(mean, m, moments.lin_sq_sum / moments.n_cells - m ** 2)]
    if genes == "hvg+tfs":  # BEELINE's 'TFs + N': the TFs among the next n variable genes join the top n
        nxt = ranked[n:2 * n]
        return np.concatenate([ranked[:n], nxt[np.isin(symbols[nxt], list(tf_symbols(organism)))]])
    return ranked[:n]


def variable_order(logx: sp.spmatrix | np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Columns of log-normalised expression (cells × genes), most variable first (`dispersion_order`)."""
    logx = sp.csr_matrix(logx)
    mean = np.asarray(logx.mean(axis=0)).ravel()
    expm1 = logx.copy()
    expm1.data = np.expm1(expm1.data)
    m = np.asarray(expm1.mean(axis=0)).ravel()
    var = np.asarray(expm1.multiply(expm1).mean(axis=0)).ravel() - m ** 2
    return dispersion_order(mean, m, var, n_bins)


def dispersion_order(mean_log: np.ndarray, mean: np.ndarray, var: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Genes most variable first: Seurat's normalised dispersion (variance/mean of the expm1 values, z-scored
    within 20 bins of mean log expression), so that a gene is variable for its expression level rather than for
    being highly expressed."""
    disp = np.log(np.maximum(var, 1e-12) / np.maximum(mean, 1e-12))
    bins = pd.cut(mean_log, bins=n_bins, labels=False)
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
