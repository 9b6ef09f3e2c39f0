"""The network-method registry, the data networks, rank fusion and the protocol's paired bootstrap."""

import numpy as np
import pytest
import torch
from _tasks_support import pbmc, run_grn, tiny_bundle

from grnformer import InputError
from grnformer.bench import protocol
from grnformer.bench.baselines import infer
from grnformer.networks.from_data import abs_correlation, fuse_ranks, parse_weights
from grnformer.networks.grn_options import FUSION_COMPONENTS, GRNOptions
from grnformer.networks.methods import METHODS

GENES = ["CD3E", "LYZ", "MS4A1", "CD14", "NKG7", "SPI1", "PAX5", "TCF7", "GNLY", "S100A8", "CEBPB", "IRF8"]


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture(scope="module")
def cells():
    return pbmc(60)


def test_every_registered_method_runs_through_grn(bundle, cells):
    for name, method in METHODS.items():
        net = run_grn(bundle, cells, genes=GENES, method=name, max_regulators=3)
        assert net.uns["grn"]["method"] == name and net.varp["GRN"].shape == (len(GENES), len(GENES))
        assert np.isfinite(np.asarray(net.varp["GRN"])).all()


def test_every_method_declares_the_traits_the_dispatcher_runs_it_by(bundle, cells):
    """The dispatcher reads a method's traits only: each is one of the kinds it knows, a method that does not knock
    out has a form, a method's own settings are network settings; an unknown name is refused by name."""
    import dataclasses

    from grnformer.networks.dispatch import iter_networks, networks_in_one_pass
    from grnformer.networks.grn_options import NETWORK_SETTINGS
    from grnformer.networks.network_plan import plan_networks

    for method in METHODS.values():
        assert method.accumulates in ("mean_qk", "per_cell", "knockout", None), method.name
        assert (method.form is None) == (method.accumulates == "knockout"), method.name
        assert method.correlation in (None, "pearson", "spearman") and set(method.own_settings) <= set(NETWORK_SETTINGS)
        assert not method.attention_only or method.reads_attention
    opts = GRNOptions(genes=GENES, regulators="all", method="mean_qk").validate(bundle)
    plan = plan_networks(bundle, cells, opts)
    unknown = dataclasses.replace(opts, method="no_such_method")
    with pytest.raises(InputError, match="method must be one of mean_qk, .*; got 'no_such_method'"):
        next(iter_networks(bundle, plan, unknown, torch.device("cpu"), ["all"], progress=False))
    with pytest.raises(InputError, match="got 'no_such_method'"):
        networks_in_one_pass(bundle, plan, unknown, torch.device("cpu"), progress=False)


def test_pearson_method_is_the_baselines_pearson(bundle, cells):
    """One |r| rule: grn's data network and the bench's Pearson baseline agree on the same cells and genes."""
    net = run_grn(bundle, cells, genes=GENES, method="pearson")
    from grnformer.data.input.prepare import prepare

    prepared, _ = prepare(cells, vocab=bundle.vocab)
    base = infer("pearson", prepared, genes=GENES)
    a, b = np.asarray(net.varp["GRN"]), np.asarray(base.varp["GRN"])
    np.fill_diagonal(a, 0)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_fused_is_the_rank_fusion_of_its_components(bundle, cells):
    weights = {"attention": 0.5, "pearson": 0.3, "embedding": 0.2}
    parts = {c: np.asarray(run_grn(bundle, cells, genes=GENES, method=m).varp["GRN"], dtype=np.float64)
             for c, m in (("attention", "mean_qk"), ("pearson", "pearson"), ("embedding", "embedding"))}
    text = ",".join(f"{c}:{w}" for c, w in weights.items())
    fused = run_grn(bundle, cells, genes=GENES, method="fused", fusion_weights=text, regulators="tfs")
    mask = fused.var["is_regulator"].to_numpy()
    np.testing.assert_allclose(fused.varp["GRN"], fuse_ranks(parts, weights, mask), atol=1e-6)
    assert (fused.varp["GRN"][~mask] == 0).all() and (np.diag(fused.varp["GRN"]) == 0).all()


def test_rank_fusion_orders_by_weighted_ranks():
    a = np.array([[0, 3, 2, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=float)
    b = np.array([[0, 1, 2, 3], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=float)
    rows = np.array([True, False, False, False])
    only_a = fuse_ranks({"a": a, "b": b}, {"a": 1, "b": 0}, rows)
    assert np.argsort(-only_a[0, 1:]).tolist() == [0, 1, 2]
    even = fuse_ranks({"a": a, "b": b}, {"a": 1, "b": 1}, rows)
    np.testing.assert_allclose(even[0, 1:], [2 / 3, 2 / 3, 2 / 3])


def test_bad_fusion_weights_are_refused(bundle):
    for bad, why in (("attention:x", "name:weight"), ("heads:1", "unknown"), ("pearson:-1,attention:1", ">= 0"),
                     ("pearson:0", "positive")):
        with pytest.raises(InputError, match=why):
            GRNOptions(method="fused", fusion_weights=bad).validate(bundle)
    assert parse_weights("attention:1,denoised:0.5", FUSION_COMPONENTS) == {"attention": 1.0, "denoised": 0.5}


def test_abs_correlation_of_planted_pairs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    x = np.column_stack([x, -2 * x[:, 0] + 0.01 * rng.normal(size=200), np.ones(200)])
    r = abs_correlation(x)
    assert r[0, 3] > 0.99 and r[1, 3] < 0.2 and (r[4] == 0).all()


def test_protocol_split_names_other_datasets_for_evaluation():
    dev = {p.dataset for p in protocol.pairs(protocol.DEVELOPMENT)}
    ev = {p.dataset for p in protocol.pairs(protocol.EVALUATION)}
    assert dev and ev and not dev & ev


def test_paired_bootstrap_separates_a_planted_network_from_noise():
    rng = np.random.default_rng(1)
    truth = rng.random((30, 80)) < 0.05
    valid = np.ones_like(truth)
    good = truth + 0.8 * rng.random(truth.shape)
    noise = rng.random(truth.shape)
    res = protocol.bootstrap({"good": good, "genie3": noise, "pearson": noise.copy()}, truth, valid, n_boot=60)
    assert res["good"]["ratio"] > 3 and res["good"]["minus_genie3_ci"][0] > 0
    lo, hi = res["pearson"]["minus_genie3_ci"]
    assert lo == hi == 0 and "minus_pearson" not in res["pearson"]
    assert res["genie3"]["ratio_ci"][0] < 1.5 < res["good"]["ratio_ci"][0]


def test_a_longer_inference_context_holds_the_network_genes_for_per_cell_maps(bundle, cells):
    """80 genes do not fit the tiny model's 64-gene context; with context_length 96 they share one, so per-cell
    maps cover every pair (each map's rows are softmax rows over the 80 genes)."""
    with pytest.raises(InputError, match="context_length"):
        run_grn(bundle, cells, genes="hvg", n_genes=80, method="per_cell")
    net = run_grn(bundle, cells, genes="hvg", n_genes=80, method="per_cell", context_length=96, direction="qk")
    assert net.uns["grn"]["n_contexts_per_cell"] == 1 and net.uns["grn"]["context_length"] == 96
    np.testing.assert_allclose(np.asarray(net.varp["GRN"]).sum(axis=1), 1.0, rtol=1e-4)
    chunked = run_grn(bundle, cells, genes="hvg", n_genes=80, method="mean_qk")
    assert chunked.uns["grn"]["n_contexts_per_cell"] == 2


def test_spearman_method_is_the_baselines_spearman(bundle, cells):
    net = run_grn(bundle, cells, genes=GENES, method="spearman")
    from grnformer.data.input.prepare import prepare

    prepared, _ = prepare(cells, vocab=bundle.vocab)
    a, b = np.asarray(net.varp["GRN"]), np.asarray(infer("spearman", prepared, genes=GENES).varp["GRN"])
    np.fill_diagonal(a, 0)
    np.testing.assert_allclose(a, b, atol=1e-5)
