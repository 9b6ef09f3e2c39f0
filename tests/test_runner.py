"""The benchmark matrix on real data: outputs, caching, organism matching, registered methods, early errors."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from grnformer import InputError
from grnformer.bench.baselines import network_anndata
from grnformer.bench.bench_options import BenchOptions
from grnformer.bench.runner import (
    available_methods,
    bench_main,
    register_method,
    run_bench,
)
from grnformer.data.corpus.datasets import load


@pytest.fixture(scope="module")
def chen():
    return load("chen_hesc", prepared=True)


def _anti_network(adata, genes, regulators, **options):
    """A registered method scoring every pair by minus its Pearson correlation (worse than random on purpose)."""
    from grnformer.bench.baselines import infer

    net = infer("pearson", adata, genes=genes, regulators=regulators)
    scores = -net.varp["GRN"]
    return network_anndata(scores, list(net.var_names), list(net.var_names), None,
                           {"method": "anti", "seconds": 0.0, **options})


def test_run_bench_writes_every_output_and_reuses_its_cache(tmp_path, chen):
    register_method("anti", _anti_network, version="1")
    assert {"genie3", "grnboost2", "pearson", "spearman", "regdiffusion", "anti"} <= set(available_methods())
    truths = ["mccalla_hesc_chip_kd", "omnipath_tf", "mccalla_mesc_chip_kd"]   # the mouse one must be skipped
    res = run_bench(["pearson", "anti"], {"chen": chen}, truths, tmp_path,
                    BenchOptions(n_genes=150, n_tfs=60, universes=["all", "tf"]), progress=False)
    recs = res["records"]
    assert {r["truth"] for r in recs} == {"mccalla_hesc_chip_kd", "omnipath_tf"}
    assert len(recs) == 2 * 2 * 2
    for r in recs:
        assert r["random_precision"] == pytest.approx(r["n_true"] / r["n_candidates"])
    omni = {r["method"]: r for r in recs if r["truth"] == "omnipath_tf" and r["universe"] == "all"}
    assert omni["anti"]["auroc"] == pytest.approx(1 - omni["pearson"]["auroc"], abs=1e-6)

    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["records"][0].keys() >= {"auprc", "ap", "auroc", "epr", "odds_ratio", "random_precision"}
    md = (tmp_path / "results.md").read_text()
    assert "chen vs omnipath_tf" in md and "| pearson |" in md and "| anti |" in md
    drawable = {(r["truth"], r["universe"]) for r in recs if r["n_true"] > 0}   # a curve needs a true edge
    assert ("omnipath_tf", "all") in drawable
    pngs = sorted(tmp_path.glob("pr_*.png"))
    assert len(pngs) == len(drawable) and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    html = (tmp_path / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == len(drawable) and base64.b64decode(images[0])[:4] == b"\x89PNG"
    assert "http" not in re.sub(r"<pre>.*?</pre>", "", html, flags=re.DOTALL)   # nothing fetched from elsewhere
    assert len(list((tmp_path / "networks").glob("*.h5ad"))) == 2

    again = run_bench(["pearson", "anti"], {"chen": chen}, truths, tmp_path,
                      BenchOptions(n_genes=150, n_tfs=60, universes=["all", "tf"]), progress=False)
    assert all(t["cached"] for t in again["timings"])
    np.testing.assert_array_equal([r["auprc"] for r in again["records"]], [r["auprc"] for r in recs])
    changed = run_bench(["pearson"], {"chen": chen}, ["omnipath_tf"], tmp_path, BenchOptions(n_genes=120, n_tfs=60),
                        progress=False, report=False)
    assert not changed["timings"][0]["cached"]                     # other genes, other key


def test_a_changed_option_protocol_or_weights_never_reuses_a_cached_network(tmp_path, chen, monkeypatch):
    """The cache key follows what changes a network: its options, the checkpoint's bytes (not its name) and the
    protocol version; worker counts do not change a network and reuse it."""
    from grnformer.bench import runner
    from grnformer.bench.baselines import infer

    calls = []

    def scaled(adata, genes, regulators, scale=1.0, checkpoint=None, n_jobs=1):
        calls.append(scale)
        net = infer("pearson", adata, genes=genes, regulators=regulators)
        return network_anndata(net.varp["GRN"] * scale, list(net.var_names), list(net.var_names), None,
                               {"method": "scaled", "seconds": 0.0})

    register_method("scaled", scaled, version="1")
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"first weights")

    def run(**opts):
        options = BenchOptions(n_genes=60, n_tfs=20, method_options={"scaled": {"checkpoint": str(weights), **opts}})
        res = run_bench(["scaled"], {"chen": chen}, ["omnipath_tf"], tmp_path / "out", options, progress=False,
                        report=False)
        return res["timings"][0]

    assert not run(scale=1.0)["cached"]
    assert run(scale=1.0, n_jobs=4)["cached"]
    assert not run(scale=2.0)["cached"]
    weights.write_bytes(b"new weights, same name")
    assert not run(scale=1.0)["cached"]
    monkeypatch.setattr(runner, "PROTOCOL_VERSION", "next")
    stale = run(scale=1.0)
    assert not stale["cached"]
    assert calls == [1.0, 2.0, 1.0, 1.0]
    assert len(list((tmp_path / "out" / "networks").glob("scaled__chen__*.h5ad"))) == 4
    assert not list((tmp_path / "out" / "networks").glob("*.part"))


def test_baseline_options_reach_the_method(tmp_path, chen):
    options = BenchOptions(n_genes=40, n_tfs=10, regulators="tf", method_options={"genie3": {"n_estimators": 3}})
    res = run_bench(["genie3"], {"chen": chen}, ["omnipath_tf"], tmp_path, options, progress=False, report=False)
    net_path = tmp_path / res["timings"][0]["network"]
    import anndata as ad

    net = ad.read_h5ad(net_path)
    assert net.uns["grn"]["params"]["n_estimators"] == 3
    assert net.var["is_regulator"].sum() == net.var["is_tf"].sum() >= 10
    assert np.all(net.varp["GRN"][~net.var["is_regulator"].to_numpy()] == 0)


def test_errors_come_before_any_output(tmp_path, chen):
    out = tmp_path / "never"
    with pytest.raises(InputError, match="unknown ground truth"):
        run_bench(["pearson"], {"chen": chen}, ["string_db"], out, progress=False)
    with pytest.raises(InputError, match="unknown method"):
        run_bench(["aracne"], {"chen": chen}, ["omnipath_tf"], out, progress=False)
    with pytest.raises(InputError, match="universe"):
        run_bench(["pearson"], {"chen": chen}, ["omnipath_tf"], out, BenchOptions(universes=["genome"]),
                  progress=False)
    with pytest.raises(InputError, match="checkpoint"):
        bench_main(["pearson"], ["chen_hesc"], ["omnipath_tf"], out, checkpoint="model.ckpt")
    with pytest.raises(InputError, match="unknown dataset"):
        bench_main(["pearson"], ["no_such_dataset"], ["omnipath_tf"], out)
    assert not out.exists()


def test_grnformer_runs_as_a_bench_method_with_the_shipped_model(tmp_path):
    """The tasks layer's attention networks go through the same runner, scoring and report as the baselines."""
    import json

    from grnformer.bench.runner import available_methods, bench_main

    assert "grnformer" in available_methods()
    bench_main(["grnformer"], ["chen_hesc"], ["mccalla_hesc_chip_kd"], tmp_path, BenchOptions(n_genes=40, n_tfs=20),
               checkpoint="shipped")
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["methods"]["grnformer"].startswith("grnformer ")
    assert result["settings"]["method_options"]["grnformer"]["checkpoint"] == "shipped"
    assert (tmp_path / "report.html").stat().st_size > 0


def test_score_networks_takes_an_organism_by_name_or_term(chen):
    """A user says 'human'; truths record NCBITaxon terms. Both spellings score the same, and a truth of the other
    organism is skipped, not scored."""
    from grnformer.bench.baselines import infer
    from grnformer.bench.runner import score_networks
    from grnformer.bench.truths import load_truth

    truths = {"kd": load_truth("mccalla_hesc_chip_kd"), "mouse": load_truth("mccalla_mesc_chip_kd")}
    edges = truths["kd"].edges
    present = set(chen.var["symbol"].astype(str))
    edges = edges[edges["regulator"].isin(present) & edges["target"].isin(present)]
    genes = list(dict.fromkeys([*edges["regulator"], *edges["target"].value_counts().index[:100]]))
    nets = {"pearson": infer("pearson", chen, genes=genes, regulators=genes)}
    by_name, _ = score_networks(nets, truths, "human")
    by_term, _ = score_networks(nets, truths, "NCBITaxon:9606")
    assert {r["truth"] for r in by_name} == {"kd"} and all(r["n_true"] > 0 for r in by_name)
    assert [r["auprc"] for r in by_name] == [r["auprc"] for r in by_term]
    with pytest.raises(InputError, match="unknown organism"):
        score_networks(nets, truths, "zebrafish")
