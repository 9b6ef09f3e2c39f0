"""Baselines on real counts (Chen hESC): correlations against numpy/scipy, tree methods recover a planted copy,
seeding, the network convention, and clear errors."""

from __future__ import annotations

import importlib.util

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import spearmanr

from grnformer import InputError
from grnformer.bench.baselines import infer, log_normalised, select_genes
from grnformer.data.corpus.datasets import load
from grnformer.data.genes import tf_symbols


@pytest.fixture(scope="module")
def chen():
    return load("chen_hesc", prepared=True)


@pytest.fixture(scope="module")
def genes(chen):
    return select_genes(chen, n_genes=60, n_tfs=20)


def test_select_genes_takes_variable_tfs_then_variable_genes(chen):
    genes = select_genes(chen, n_genes=200, n_tfs=50)
    assert len(genes) == len(set(genes)) == 200
    tfs = tf_symbols("human")
    assert all(g in tfs for g in genes[:50]) and sum(g in tfs for g in genes) >= 50
    assert genes == select_genes(chen, n_genes=200, n_tfs=50)
    x = log_normalised(chen)
    detected = pd.Series((x > 0).mean(0), index=chen.var["symbol"].to_numpy())
    assert (detected[genes] >= 0.01).all()


def test_correlations_match_numpy_and_scipy(chen, genes):
    net = infer("pearson", chen, genes=genes)
    cols = pd.Index(chen.var["symbol"]).get_indexer(genes)
    x = log_normalised(chen, cols)
    expected = np.abs(np.corrcoef(x.T))
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(net.varp["GRN"], expected, atol=1e-5)
    assert list(net.var_names) == genes and net.n_obs == 0
    assert net.var["is_tf"].sum() >= 20 and net.var["is_regulator"].all()
    sp_net = infer("spearman", chen, genes=genes[:20])
    rho = np.abs(spearmanr(x[:, :20]).statistic)
    np.fill_diagonal(rho, 0)
    np.testing.assert_allclose(sp_net.varp["GRN"], rho, atol=1e-5)


def test_log_normalisation_uses_depth_over_all_genes(chen):
    x = log_normalised(chen, np.arange(5))
    counts = chen.X[:, :5].toarray()
    depth = np.asarray(chen.X.sum(1)).ravel()
    np.testing.assert_allclose(x, np.log1p(counts / depth[:, None] * 1e4), rtol=1e-5)


def _with_planted_copy(chen, source: str):
    """Chen plus a gene 'COPY' whose counts are a binomial thinning of ``source``'s (a real dependency)."""
    col = list(chen.var["symbol"]).index(source)
    rng = np.random.default_rng(0)
    copy = rng.binomial(chen.X[:, col].toarray().ravel().astype(np.int64), 0.7).astype(np.float32)
    x = sp.hstack([chen.X, sp.csr_matrix(copy[:, None])], format="csr")
    var = pd.DataFrame({"symbol": list(chen.var["symbol"]) + ["COPY"]})
    var.index = var.index.astype(str)
    return ad.AnnData(x, obs=chen.obs.copy(), var=var)


@pytest.mark.parametrize("method,kw", [("genie3", {"n_estimators": 20}),
                                       ("genie3", {"n_estimators": 20, "tree_method": "et"}),
                                       ("genie3", {"n_estimators": 20, "max_samples": 150}),
                                       ("grnboost2", {"n_estimators": 60, "learning_rate": 0.1})])
def test_tree_methods_find_a_planted_regulator(chen, genes, method, kw):
    data = _with_planted_copy(chen, genes[0])
    net = infer(method, data, genes=genes[:30] + ["COPY"], seed=3, **kw)
    grn = net.varp["GRN"]
    names = list(net.var_names)
    source = names.index(genes[0])
    assert grn[:, names.index("COPY")].argmax() == source      # its best predictor is the gene it was copied from
    assert grn[source, source] == 0 and (grn >= 0).all()
    assert net.uns["grn"]["method"] == method and net.uns["grn"]["seconds"] > 0


def test_tree_methods_are_seeded_and_independent_of_n_jobs(chen, genes):
    a = infer("genie3", chen, genes=genes[:15], seed=7, n_estimators=5, n_jobs=1)
    b = infer("genie3", chen, genes=genes[:15], seed=7, n_estimators=5, n_jobs=2)
    c = infer("genie3", chen, genes=genes[:15], seed=8, n_estimators=5, n_jobs=1)
    np.testing.assert_array_equal(a.varp["GRN"], b.varp["GRN"])
    assert not np.array_equal(a.varp["GRN"], c.varp["GRN"])


def test_regulator_restriction_leaves_other_rows_empty(chen, genes):
    regs = genes[:5]
    net = infer("grnboost2", chen, genes=genes[:20], regulators=regs, n_estimators=20)
    grn = net.varp["GRN"]
    assert (grn[5:] == 0).all() and grn[:5].sum() > 0
    assert net.var["is_regulator"].sum() == 5


def test_regdiffusion_runs_or_says_how_to_install(chen, genes):
    if importlib.util.find_spec("regdiffusion") is None:
        with pytest.raises(ImportError, match="pip install --no-deps regdiffusion"):
            infer("regdiffusion", chen, genes=genes[:30], n_steps=2)
        return
    net = infer("regdiffusion", chen, genes=genes[:30], n_steps=3, seed=0)
    assert net.varp["GRN"].shape == (30, 30) and np.isfinite(net.varp["GRN"]).all()
    assert np.all(np.diag(net.varp["GRN"]) == 0)
    assert net.uns["grn"]["version"].startswith("regdiffusion ")


def test_bad_inputs_raise_input_error(chen, genes):
    with pytest.raises(InputError, match="unknown method"):
        infer("aracne", chen, genes=genes)
    with pytest.raises(InputError, match="none of the"):
        infer("pearson", chen, genes=["NOT_A_GENE", "NOR_THIS"])
    with pytest.raises(InputError, match="no option"):
        infer("pearson", chen, genes=genes, n_estimators=5)
    with pytest.raises(InputError, match="regulators"):
        infer("pearson", chen, genes=genes, regulators=["NOT_A_GENE"])
    neg = ad.AnnData(sp.csr_matrix(-np.ones((3, 2), dtype=np.float32)),
                     var=pd.DataFrame(index=["A", "B"]))
    with pytest.raises(InputError, match="negative"):
        infer("pearson", neg)
