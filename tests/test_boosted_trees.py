"""The GRNBoost2-class booster (networks/boosted_trees.py) on real PBMC expression: it finds a regulator planted
in a target, its scores do not depend on the number of jobs, and `grn --method boosted` is that booster on the
network's TF rows."""

import numpy as np
import pytest
from _tasks_support import pbmc, run_grn, tiny_bundle

from grnformer.bench.baselines import infer
from grnformer.data.input.expression import log_per_10k
from grnformer.data.input.prepare import prepare
from grnformer.networks.boosted_trees import boosted_importance


@pytest.fixture(scope="module")
def expression():
    cells = pbmc(300)
    x = np.asarray(log_per_10k(cells.X).toarray(), dtype=np.float32)
    keep = np.flatnonzero((x > 0).mean(0) > 0.2)[:40]
    return x[:, keep], cells.var_names[keep].to_numpy()


def test_a_planted_regulator_leads_its_target_and_jobs_do_not_change_scores(expression):
    x, _ = expression
    rng = np.random.default_rng(0)
    reg = np.arange(10)
    planted = x.copy()
    planted[:, 20] = np.tanh(x[:, 3]) + 0.2 * rng.standard_normal(len(x))  # target 20 ← regulator 3
    one = boosted_importance(planted, reg, n_jobs=1)
    assert one.shape == (10, 40) and (one >= 0).all()
    assert np.argmax(one[:, 20]) == 3 and one[3, 20] > 3 * np.sort(one[:, 20])[-2]
    assert (one[np.arange(10), reg] == 0).all()  # a regulator never predicts itself
    np.testing.assert_array_equal(boosted_importance(planted, reg, n_jobs=2), one)
    splits = boosted_importance(planted, reg, n_jobs=1, importance="splits")
    assert np.allclose(splits, np.round(splits)) and splits[:, 20].sum() > 0  # counts of splits per regulator


def test_unknown_options_are_refused(expression):
    x, _ = expression
    with pytest.raises(ValueError, match="unknown booster option"):
        boosted_importance(x, np.arange(3), n_estimators=5)
    with pytest.raises(ValueError, match="importance must be"):
        boosted_importance(x, np.arange(3), importance="permutation")


def test_grn_boosted_is_the_booster_on_the_tf_rows_and_a_bench_baseline():
    bundle = tiny_bundle()
    cells, _ = prepare(pbmc(120), vocab=bundle.vocab)  # counts over the vocabulary's genes, as grn reads them
    net = run_grn(bundle, cells, genes="hvg+tfs", n_genes=40, method="boosted", regulators="tfs")
    rows = net.var["is_regulator"].to_numpy()
    grn = np.asarray(net.varp["GRN"])
    assert rows.any() and (grn[~rows] == 0).all() and (grn[rows] > 0).any()
    x = np.asarray(log_per_10k(cells.X)[:, cells.var_names.get_indexer(net.var["gene_id"])].toarray())
    np.testing.assert_allclose(grn[rows], boosted_importance(x, np.flatnonzero(rows)), rtol=1e-5)
    base = infer("boosted", cells, genes=net.var["symbol"].tolist(), regulators=net.var["symbol"][rows].tolist())
    np.testing.assert_allclose(np.asarray(base.varp["GRN"])[rows], grn[rows], rtol=1e-5)
    assert base.uns["grn"]["version"].startswith("scikit-learn")
