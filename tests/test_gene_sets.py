"""Variable-gene choice has one owner (`inference.gene_sets`): the bench baselines' gene set and the demo's network
genes rank genes as grn's 'hvg' does, on real counts (Chen hESC, PBMC3k)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from grnformer import InputError
from grnformer.bench.baselines import log_normalised, select_genes
from grnformer.data.corpus.datasets import load
from grnformer.data.genes import tf_symbols
from grnformer.data.input.expression import log_per_10k
from grnformer.inference.gene_sets import variable_genes, variable_order


def _ranked(logx: np.ndarray, symbols: np.ndarray, min_cells: int) -> list[str]:
    keep = np.flatnonzero((np.asarray((logx > 0).sum(0)).ravel() >= min_cells) & ~pd.Index(symbols).duplicated())
    return [str(g) for g in symbols[keep[variable_order(logx[:, keep])]]]


def test_baseline_gene_set_ranks_like_hvg():
    """Before, baselines ranked by variance/mean of log values: 66 of these 200 genes were chosen then."""
    chen = load("chen_hesc", prepared=True)
    genes = select_genes(chen, n_genes=200, n_tfs=50)
    ranked = _ranked(log_normalised(chen), chen.var["symbol"].astype(str).to_numpy(), math.ceil(0.01 * chen.n_obs))
    tfs = tf_symbols("human")
    assert genes[:50] == [g for g in ranked if g in tfs][:50]
    assert genes[50:] == [g for g in ranked if g not in set(genes[:50])][:150]


def test_demo_network_genes_rank_like_hvg():
    """The demo used scanpy's highly_variable_genes and names made unique ('GENE-1'); now the owner's ranking and
    symbols, each once: 208 of 300 PBMC3k genes are the same as before."""
    from grnformer.data.input.prepare import prepare
    from grnformer.demo import MIN_TF_DETECTION, _network_genes

    adata = prepare(load("pbmc3k"))[0]
    genes = _network_genes(adata, 300)
    symbols = adata.var["symbol"].astype(str).to_numpy()
    ranked = _ranked(log_per_10k(adata.X), symbols, max(3, adata.n_obs // 200))
    detected = pd.Series(np.asarray((adata.X > 0).mean(0)).ravel(), index=symbols)
    detected = detected[~detected.index.duplicated()]
    tfs = [g for g in ranked if g in tf_symbols("human") and detected[g] >= MIN_TF_DETECTION]
    assert len(genes) == len(set(genes)) == 300 and genes[:100] == tfs[:100]
    assert genes[100:] == [g for g in ranked if g not in set(genes[:100])][:200]


def test_variable_genes_tfs_first_and_bad_input():
    x = np.array([[0, 5, 1, 0], [3, 0, 1, 0], [0, 5, 1, 2], [4, 0, 1, 0]], dtype=np.float32)
    logx = np.log1p(x)
    assert variable_genes(logx, ["A", "B", "C", "D"], 2, tfs={"C"}, n_tfs=1, min_cells=2)[0] == "C"
    assert "D" not in variable_genes(logx, ["A", "B", "C", "D"], 4, min_cells=2)   # seen in one cell
    assert variable_genes(logx, ["A", "A", "C", "D"], 4, min_cells=1).count("A") == 1
    with pytest.raises(InputError, match="symbols"):
        variable_genes(logx, ["A", "B"], 2)
