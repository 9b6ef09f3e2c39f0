"""A TF→target prior laid over a network (networks/prior.py, `grn --prior`): the file a user gives, what the
re-ranking does at weight 0 and 1, a run through grn and grn_file (recorded, compared on resume, refused when it
cannot act), and the committed record (benchmarks/results/priors.json) the default weight is tied to."""

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from _bench_scripts import load_script
from _tasks_support import pbmc, run_grn_file, tiny_bundle

from grnformer import InputError
from grnformer.data.resources import file_sha256
from grnformer.networks.grn import GRNOptions, grn
from grnformer.networks.grn_options import DEFAULT_PRIOR_WEIGHT
from grnformer.networks.prior import lay_prior, read_prior

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "priors.json"


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture(scope="module")
def cells():
    return pbmc(60)


@pytest.fixture(scope="module")
def plain(bundle, cells):
    return grn(bundle, cells, GRNOptions(method="spearman", genes="hvg", n_genes=30, regulators="all"),
               progress=False)


def _weakest_edges(net: ad.AnnData, n: int) -> list[tuple[str, str]]:
    """The n weakest nonzero off-diagonal edges: a prior the data alone ranks last."""
    m = np.asarray(net.varp["GRN"], dtype=float).copy()
    np.fill_diagonal(m, np.inf)
    m[m == 0] = np.inf
    flat = np.argsort(m, axis=None)[:n]
    names = net.var_names.to_numpy()
    return [(names[i], names[j]) for i, j in zip(*np.unravel_index(flat, m.shape))]


def _write(path: Path, edges: list[tuple[str, str]], header: str | None = "regulator\ttarget", sep: str = "\t"):
    lines = ([header] if header else []) + [f"{a}{sep}{b}" for a, b in edges]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_prior_takes_tsv_or_csv_with_or_without_a_header(tmp_path):
    tsv = read_prior(_write(tmp_path / "p.tsv", [("SPI1", "CD14"), ("PAX5", "CD19")]))
    csv = read_prior(_write(tmp_path / "p.csv", [("SPI1", "CD14"), ("PAX5", "CD19")], "Gene1,Gene2", ","))
    bare = read_prior(_write(tmp_path / "p.txt", [("SPI1", "CD14"), ("PAX5", "CD19"), ("SPI1", "CD14")], None))
    for prior in (tsv, csv, bare):
        assert prior.edges.values.tolist() == [["SPI1", "CD14"], ["PAX5", "CD19"]]
    assert tsv.sha256 == file_sha256(tmp_path / "p.tsv")


@pytest.mark.parametrize("text, match", [(None, "no file"), ("SPI1\nPAX5\n", "two columns"),
                                         ("regulator\ttarget\n", "no regulator, target edge")])
def test_read_prior_refuses_a_file_it_cannot_use(tmp_path, text, match):
    path = tmp_path / "p.tsv"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError, match=match):
        read_prior(path)


def test_lay_prior_keeps_the_order_at_weight_0_and_puts_prior_edges_first_at_weight_1():
    rng = np.random.default_rng(0)
    net = rng.normal(size=(6, 6)).astype(np.float32)
    net[0] = 0  # a row that may not regulate
    known = np.zeros_like(net, dtype=bool)
    known[[0, 2, 3], [1, 4, 5]] = True
    same = lay_prior(net, known, 0.0)
    assert (np.argsort(np.abs(same), axis=None) == np.argsort(np.abs(net), axis=None)).all()
    assert (np.sign(same) == np.sign(net)).all() and (same[0] == 0).all()
    first = np.abs(lay_prior(net, known, 1.0))
    prior_edges = known & (net != 0)
    assert first[prior_edges].min() > first[~prior_edges].max()
    # among themselves, the prior's edges keep the data's order
    assert (np.argsort(first[prior_edges]) == np.argsort(np.abs(net[prior_edges]))).all()


def test_grn_lays_the_prior_over_the_network_and_records_it(bundle, cells, plain, tmp_path):
    edges = _weakest_edges(plain, 5)
    path = _write(tmp_path / "prior.tsv", edges + [("NOT_A_GENE", "CD14")])
    opts = dict(method="spearman", genes="hvg", n_genes=30, regulators="all")
    net = grn(bundle, cells, GRNOptions(prior=str(path), prior_weight=1.0, **opts), progress=False)
    names = list(net.var_names)
    m = np.abs(np.asarray(net.varp["GRN"]))
    marked = net.varp["GRN_prior"].toarray()
    assert sorted((names[i], names[j]) for i, j in zip(*np.nonzero(marked))) == sorted(edges)
    assert m[marked].min() > m[~marked].max()  # weakest in the data, first with the prior
    assert net.uns["grn"]["prior"] == file_sha256(path) and net.uns["grn"]["prior_weight"] == 1.0
    level = grn(bundle, cells, GRNOptions(prior=str(path), prior_weight=0.0, **opts), progress=False)
    order = np.argsort(np.abs(np.asarray(plain.varp["GRN"])), axis=None, kind="stable")
    assert (np.argsort(np.abs(np.asarray(level.varp["GRN"])), axis=None, kind="stable") == order).all()
    assert plain.uns["grn"]["prior"] is None and "GRN_prior" not in plain.varp


def test_a_per_type_network_with_a_prior_lays_it_once_over_what_sets_the_type_apart(bundle, tmp_path):
    cells = pbmc(80)
    cells.obs["half"] = np.where(np.arange(cells.n_obs) < 40, "a", "b")
    opts = dict(method="spearman", genes="hvg", n_genes=30, regulators="all", groupby="half", specificity="zscore")
    apart = grn(bundle, cells, GRNOptions(**opts), progress=False)
    edges = _weakest_edges(apart["a"], 3)
    laid = grn(bundle, cells, GRNOptions(prior=str(_write(tmp_path / "p.tsv", edges)), prior_weight=0.0, **opts),
               progress=False)
    for g in ("a", "b"):
        order = np.argsort(np.abs(np.asarray(apart[g].varp["GRN"])), axis=None, kind="stable")
        assert (np.argsort(np.abs(np.asarray(laid[g].varp["GRN"])), axis=None, kind="stable") == order).all()
        assert laid[g].varp["GRN_prior"].nnz == 3


def test_the_plain_networks_of_a_specificity_keep_the_head_selection(bundle):
    """A specificity is formed from plain per-group networks; those once lost the head selection (the options'
    copy left it unread), so a selection changed nothing."""
    cells = pbmc(80)
    cells.obs["half"] = np.where(np.arange(cells.n_obs) < 40, "a", "b")
    one_head = {"format": "grnformer-heads", "n_layers": 2, "n_heads": 2, "direction": "kq",
                "heads": [{"layer": 0, "head": 1, "weight": 1.0}],
                "fitted_with": {"method": "mean_qk", "correction": "none"}}
    kw = dict(method="mean_qk", genes="hvg", n_genes=20, regulators="all", groupby="half", specificity="zscore")
    with pytest.warns(UserWarning, match="does not record"):
        weighed = grn(bundle, cells, GRNOptions(heads=one_head, **kw), progress=False)
    mean = grn(bundle, cells, GRNOptions(**kw), progress=False)
    assert not np.allclose(weighed["a"].varp["GRN"], mean["a"].varp["GRN"])


def test_grn_file_compares_the_prior_on_resume_and_refuses_one_that_cannot_act(bundle, cells, plain, tmp_path):
    src = tmp_path / "in.h5ad"
    cells.write_h5ad(src)
    one = _write(tmp_path / "one.tsv", _weakest_edges(plain, 3))
    other = _write(tmp_path / "other.tsv", _weakest_edges(plain, 6))
    out = tmp_path / "net.h5ad"
    kw = dict(method="spearman", genes="hvg", n_genes=30)
    run_grn_file(bundle, src, out, prior=str(one), **kw)
    with pytest.raises(InputError, match="other settings .*prior"):
        run_grn_file(bundle, src, out, prior=str(other), **kw)
    for bad, match in (({"prior": str(_write(tmp_path / "x.tsv", [("NOPE1", "NOPE2")]))}, "none of the prior"),
                       ({"prior": str(one), "prior_weight": -1.0}, "prior_weight must be >= 0"),
                       ({"prior": str(one), "method": "mean_qk", "filter": "above_uniform"}, "above_uniform")):
        fresh = tmp_path / f"bad_{len(list(tmp_path.iterdir()))}.h5ad"
        with pytest.raises(InputError, match=match):
            run_grn_file(bundle, src, fresh, **{**kw, **bad})
        assert not fresh.exists()


def _bench():
    return load_script("bench_priors")


def test_the_default_weight_is_the_committed_record_s_rule_on_independent_development_pairs():
    record = json.loads(RECORD.read_text())
    bench = _bench()
    development = [r for r in record["rows"] if r["split"] == "development"]
    assert bench.choose_weight(development)["prior_weight"] == record["prior_weight"] == DEFAULT_PRIOR_WEIGHT
    declared = {(p["dataset"], p["truth"], p["prior"]): p for p in record["pairs"]}
    assert {(r["dataset"], r["truth"], r["prior"]) for r in record["rows"]} <= set(declared)
    assert all(p["independence"] for p in declared.values())
    # no prior is scored on a truth built from its own assay and cells
    for (_, truth, prior) in declared:
        assert truth != prior and not (truth.startswith("mccalla_mesc_kd") and prior.endswith("_kd"))


def test_a_streamed_network_gets_the_same_prior_as_in_memory(bundle, tmp_path, monkeypatch):
    from grnformer.networks import streaming_correlation as sc
    from grnformer.networks.files import grn_file

    cells = pbmc(120, seed=2)
    src = tmp_path / "cells.h5ad"
    cells.write_h5ad(src)
    kw = dict(method="spearman", genes="hvg", n_genes=40, regulators="all")
    edges = _weakest_edges(grn(bundle, cells, GRNOptions(**kw), progress=False), 4)
    opts = GRNOptions(prior=str(_write(tmp_path / "p.tsv", edges)), **kw)
    monkeypatch.setattr(sc, "STREAM_ABOVE_BYTES", 0)
    grn_file(bundle, src, tmp_path / "net.h5ad", opts, progress=False)
    streamed, in_memory = ad.read_h5ad(tmp_path / "net.h5ad"), grn(bundle, cells, opts, progress=False)
    assert streamed.n_obs == 0  # it did stream
    assert np.abs(np.asarray(streamed.varp["GRN"]) - np.asarray(in_memory.varp["GRN"])).max() < 1e-5
    assert streamed.varp["GRN_prior"].nnz == 4
