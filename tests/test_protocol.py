"""The network protocol (bench/protocol.py) and its script (benchmarks/bench_protocol.py): BEELINE pairs, one figure
per dataset × truth with a regulator floor, the rule that chooses the defaults, cache keys, a run of one split,
and the committed record that networks/grn_options.py's defaults are tied to."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _bench_scripts import load_script

from grnformer.bench import protocol, toolkit
from grnformer.networks.grn_options import DEFAULT_FUSION, DEFAULT_METHOD

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "protocol.json"


def _script():
    return load_script("bench_protocol")


@pytest.fixture(scope="module")
def record():
    return json.loads(RECORD.read_text())


@pytest.fixture
def script(monkeypatch):
    """The script with its model and networks stubbed: each dataset yields one scored row per pair, so the
    orchestration (which split runs, where the choice comes from, the record) is what runs."""
    module = _script()
    seen = []

    def run_dataset(bundle, name, size, pairs, args):
        seen.append((name, size, [p.split for p in pairs], list(args.chosen_settings)))
        return [{"dataset": name, "truth": p.truth, "universe": p.universe, "split": p.split, "genes": 10,
                 "tfs_plus": size, "cells": 5, "regulators": 12, "true_edges": 3, "method": "pearson",
                 "seconds": 0.1, "ratio": 1.2, "ratio_ci": [1.0, 1.4], "epr": 1.0, "epr_ci": [0.5, 1.5]}
                for p in pairs]

    monkeypatch.setattr(module, "run_dataset", run_dataset)
    monkeypatch.setattr(module, "load_task_bundle", lambda path: (None, None))
    module.seen = seen
    return module


def test_an_evaluation_only_run_takes_the_choice_from_the_development_record(script, tmp_path, record):
    out = tmp_path / "evaluation.json"
    script.main(["--split", "evaluation", "--out", str(out), "--sizes", "500"])
    written = json.loads(out.read_text())
    assert script.seen and all(set(splits) == {"evaluation"} for _, _, splits, _ in script.seen)
    assert all(chosen[0] == record["default_setting"] for _, _, _, chosen in script.seen)
    assert written["default"] == record["default"]
    assert {r["split"] for r in written["rows"]} == {"evaluation"}


def _row(dataset, truth, method, ratio, size=1000, regulators=20, seconds=1.0):
    return {"dataset": dataset, "truth": truth, "method": method, "ratio": ratio, "tfs_plus": size,
            "regulators": regulators, "split": protocol.DEVELOPMENT, "seconds": seconds}


def test_one_figure_per_dataset_and_truth_and_thin_pairs_are_marked_not_aggregated():
    rows = [_row("a", "t", "m", 1.0, 500), _row("a", "t", "m", 3.0, 1000), _row("b", "t", "m", 9.0, regulators=3),
            _row("c", "t", "m", 5.0), {**_row("d", "t", "m", 7.0), "split": protocol.EVALUATION}]
    figs = protocol.pair_figures(rows, protocol.DEVELOPMENT)
    assert [(f["dataset"], f["ratio"], f["sizes"], f["below_floor"]) for f in figs] == \
        [("a", 2.0, [500, 1000], False), ("b", 9.0, [1000], True), ("c", 5.0, [1000], False)]
    assert protocol.aggregate(figs) == {"m": 3.5} and protocol.aggregate(figs, without="c") == {"m": 2.0}


def test_the_rule_keeps_fast_candidates_and_prefers_the_cheaper_of_a_tie():
    scores = {"slow": 3.0, "fused": 2.005, "cheap": 2.0, "worse": 1.0}
    cost = {"slow": 50.0, "fused": 5.0, "cheap": 1.0, "worse": 0.5}
    assert protocol.choose_default(scores, cost, genie3_cost=100.0) == "cheap"  # slow is over 1/10 of GENIE3
    assert protocol.choose_default(scores, cost, genie3_cost=1000.0) == "slow"
    with pytest.raises(ValueError, match="fast enough"):
        protocol.choose_default(scores, cost, genie3_cost=1.0)


def test_a_method_that_leads_through_one_dataset_does_not_win_and_the_choice_survives_dropping_one():
    values = {"spiky": {"x": 5.0, "y": 5.0, "z": 0.5}, "steady": {"x": 3.0, "y": 3.0, "z": 3.0}}
    figs = protocol.pair_figures([_row(d, "t", m, v) for m, by in values.items() for d, v in by.items()],
                                 protocol.DEVELOPMENT)
    assert protocol.aggregate(figs) == {"spiky": 5.0, "steady": 3.0}  # the median alone would take spiky
    robust = protocol.robust_scores(figs)
    assert robust == {"steady": 3.0, "spiky": 2.75}
    cost = {"spiky": 1.0, "steady": 1.0}
    assert protocol.choose_default(robust, cost, 100.0) == "steady"
    loo = protocol.leave_one_out(figs, cost, 100.0, "steady")
    # without z, spiky leads on both datasets left: the check reports that the choice hangs on z
    assert [v["chosen"] for v in loo.values()] == ["steady", "steady", "spiky"] and not loo["z"]["same"]


def test_cache_keys_include_code_version_and_precision(script, tmp_path, monkeypatch):
    monkeypatch.setattr(script, "CACHE", tmp_path)
    made = []

    def grn(bundle, adata, options, progress):
        made.append(options.method)
        return SimpleNamespace(var_names=SimpleNamespace(tolist=lambda: ["A", "B"]), varp={"GRN": np.eye(2)})

    monkeypatch.setattr(script, "grn", grn)
    cells = SimpleNamespace(n_obs=3)
    for precision, code in (("fp32", "c1"), ("fp32", "c1"), ("bf16", "c1"), ("fp32", "c2")):
        args = SimpleNamespace(code={"grn": code}, digest="d", precision=precision)
        script.run_component(None, cells, ["A", "B"], "pearson", "set", args)
    assert len(made) == 3  # the repeat is read from the cache; another precision or code is computed again


def test_beeline_sets_load_with_pseudo_counts_and_tf_regulators():
    adata = protocol.load_beeline("beeline_mhsc_l", 500)
    assert adata.n_obs == 847 and adata.uns["transform"] == "given" and float(adata.X.max()) < 20
    np.testing.assert_allclose(np.asarray(adata.layers["counts"].sum(1)).ravel(), 10_000, rtol=0.03)  # rounded
    tfs = protocol.beeline_tfs("beeline_mhsc_l", 500)
    for truth in protocol.BEELINE_TRUTHS:
        regulators = set(protocol.beeline_truth("beeline_mhsc_l", truth, 500).regulators)
        assert regulators and regulators <= tfs and regulators <= set(adata.var_names)


def test_the_committed_record_is_the_rule_s_and_the_defaults_follow_it(script, record):
    for field in ("date", "machine", "command", "protocol_version", "checkpoint_digest"):
        assert record[field], field  # written by toolkit.write_record
    assert record["network_protocol"] == protocol.VERSION and record["precision"] in ("fp32", "bf16")
    scored = {f"{r['dataset']}@{r['tfs_plus']}" for r in record["rows"] if r.get("method")}
    assert scored and scored <= set(record["hashes"]["data"]) and scored <= set(record["hashes"]["genes"])
    assert {"grn", "baselines", "scoring"} <= set(record["hashes"]["code"]) and record["hashes"]["truths"]
    dev = {r["dataset"] for r in record["rows"] if r["split"] == protocol.DEVELOPMENT}
    assert set(protocol.BEELINE_SETS) <= dev
    assert script.choose(script.record_rows(record))["default"] == record["default"]
    assert (DEFAULT_METHOD, DEFAULT_FUSION) == (record["default"]["method"], record["default"]["fusion_weights"])
    assert set(record["leave_one_out"]) == dev
    assert toolkit.PROTOCOL_VERSION == record["protocol_version"]
