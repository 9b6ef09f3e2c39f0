"""The benchmark toolkit: intervals that cover, paired differences on shared resamples, the protocol's draws kept,
and records that are written whole and say what made them."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import grnformer
from grnformer.bench import protocol, toolkit
from grnformer.edge_metrics import rank_metrics


def test_percentile_interval_covers_the_true_mean_about_95_percent_of_the_time():
    g = np.random.default_rng(11)
    trials, n = 150, 60
    hits = 0
    for t in range(trials):
        x = g.exponential(2.0, n)  # skewed, true mean 2
        lo, hi = toolkit.interval(lambda i, x=x: x[i].mean(), n, n_boot=200, seed=t)[1:]
        hits += lo <= 2.0 <= hi
    assert 0.85 <= hits / trials <= 0.99


def test_interval_of_a_normal_mean_has_the_textbook_width():
    x = np.random.default_rng(3).normal(0, 1, 400)
    est, lo, hi = toolkit.interval(lambda i: x[i].mean(), len(x), n_boot=1000)
    assert est == pytest.approx(x.mean())
    assert hi - lo == pytest.approx(2 * 1.96 * x.std() / np.sqrt(len(x)), rel=0.15)


def test_percentile_interval_leaves_out_undefined_replicates():
    assert toolkit.percentile_interval([np.nan, np.nan]) == [None, None]
    assert toolkit.percentile_interval([np.nan, *range(101)]) == [2.5, 97.5]


def test_paired_differences_are_differences_of_the_same_resamples():
    g = np.random.default_rng(0)
    x = g.normal(0, 1, 80)
    y = x + g.normal(0.1, 0.05, 80)  # method b: a + a small shift, strongly correlated unit by unit
    boot = toolkit.bootstrap({"a": lambda i: x[i].mean(), "b": lambda i: y[i].mean()}, 80, n_boot=300, seed=4)
    picks = toolkit.resamples(80, 300, seed=4)
    np.testing.assert_array_equal(boot.replicates["a"][:, 0], [x[p].mean() for p in picks])
    np.testing.assert_array_equal(boot.differences("b", "a"), [y[p].mean() - x[p].mean() for p in picks])
    point, (lo, hi) = boot.difference("b", "a")
    assert point == pytest.approx(y.mean() - x.mean())
    assert lo > 0  # paired: the shift is resolved, although each method's own interval overlaps the other's
    a_lo, a_hi = boot.interval("a")
    b_lo = boot.interval("b")[0]
    assert b_lo < a_hi and hi - lo < (a_hi - a_lo) / 5


def test_several_statistics_per_method_share_the_resamples():
    x = np.arange(10.0)
    boot = toolkit.bootstrap({"m": lambda i: (x[i].sum(), len(i))}, 10, n_boot=5, seed=1)
    assert boot.replicates["m"].shape == (5, 2)
    assert boot.point["m"].tolist() == [45.0, 10.0]
    assert boot.replicates["m"][:, 1].tolist() == [10.0] * 5
    assert boot.estimate("m", 1) == [10.0, 10.0, 10.0]


def _protocol_as_first_written(scores, truth, valid, n_boot, seed):
    """The row bootstrap that produced benchmarks/results/protocol.json, written out by hand: all draws first,
    then each method on each draw."""
    R = truth.shape[0]
    g = np.random.default_rng(seed)
    picks = [g.integers(0, R, R) for _ in range(n_boot)]

    def ratio(s, rows):
        r = rank_metrics(s[rows][valid[rows]], truth[rows][valid[rows]])
        return r["auprc"] / r["random_precision"] if r["random_precision"] > 0 else np.nan

    boots = {m: np.array([ratio(s, p) for p in picks]) for m, s in scores.items()}
    d = boots["ours"] - boots["genie3"]
    d = d[np.isfinite(d)]
    b = boots["ours"][np.isfinite(boots["ours"])]
    return [float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5))], \
        [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))]


def test_protocol_bootstrap_keeps_the_draws_behind_the_committed_record():
    g = np.random.default_rng(7)
    truth = g.random((9, 40)) < 0.05  # few true edges: some resamples have none and are left out
    valid = np.ones_like(truth)
    valid[np.arange(9), np.arange(9)] = False
    scores = {"genie3": g.random(truth.shape), "ours": g.random(truth.shape) + truth}
    res = protocol.bootstrap(scores, truth, valid, n_boot=60, seed=2)
    ci, diff_ci = _protocol_as_first_written(scores, truth, valid, 60, 2)
    assert res["ours"]["ratio_ci"] == ci
    assert res["ours"]["minus_genie3_ci"] == diff_ci
    assert "minus_pearson" not in res["ours"] and "minus_genie3" not in res["genie3"]


def test_record_carries_date_machine_command_versions_and_the_checkpoint_digest(tmp_path, monkeypatch):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights" * 1000)
    monkeypatch.chdir(tmp_path)
    path = toolkit.write_record("demo_bench", {"rows": [{"ratio": np.float64(1.5)}], "n": np.int64(3)},
                                method={"name": "pearson", "genes": "hvg+tfs"}, checkpoint=weights,
                                command="benchmarks/bench_demo.py --fast")
    assert path == toolkit.RESULTS_DIR / "demo_bench.json"
    rec = json.loads(path.read_text())
    assert rec["checkpoint_digest"] == hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
    assert rec["checkpoint"] == str(weights)
    assert rec["protocol_version"] == toolkit.PROTOCOL_VERSION == protocol.PROTOCOL_VERSION
    assert rec["method_version"] == {"grnformer": grnformer.__version__,
                                     "method": {"name": "pearson", "genes": "hvg+tfs"}}
    assert rec["command"] == "benchmarks/bench_demo.py --fast"
    assert rec["date"][:2] == "20" and "cores" in rec["machine"]
    assert rec["rows"] == [{"ratio": 1.5}] and rec["n"] == 3
    assert toolkit.record({}, method="x")["checkpoint_digest"] is None  # no model ran: said, not invented


def test_writer_refuses_to_leave_partial_output(tmp_path):
    dest = tmp_path / "results" / "bench.json"
    toolkit.write_record(dest, {"value": 1}, method="first")
    before = dest.read_text()
    with pytest.raises(TypeError, match="cannot hold object"):
        toolkit.write_record(dest, {"value": 2, "bad": object()}, method="second")
    with pytest.raises(ValueError, match="provenance"):
        toolkit.write_record(dest, {"date": "yesterday"}, method="third")
    assert dest.read_text() == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["bench.json"]  # no .part left behind


def test_a_clustering_figure_is_the_mean_over_kmeans_starts():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 5)) * 3
    points = np.vstack([c + rng.normal(size=(60, 5)) for c in centres])
    truth = np.repeat(np.arange(4), 60)
    parts = toolkit.kmeans_partitions(points, 4, seeds=3)
    assert len(parts) == 3 and all(len(p) == len(truth) for p in parts)
    score = toolkit.partition_score(adjusted_rand_score, truth, parts)
    cells = rng.integers(0, len(truth), len(truth))
    assert score(cells) == pytest.approx(np.mean([adjusted_rand_score(truth[cells], p[cells]) for p in parts]))
