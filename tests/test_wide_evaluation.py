"""The evaluation aggregate over wide gene sets (benchmarks/bench_wide_evaluation.py): its paired intervals, and
the committed record whose aggregate must follow from its own rows."""

import json
from pathlib import Path

import numpy as np
import pytest
from _bench_scripts import load_script

from grnformer.bench import protocol

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "wide_evaluation.json"


@pytest.fixture(scope="module")
def script():
    return load_script("bench_wide_evaluation")


def _pairs(ratios: dict[tuple[str, str], dict[str, float]], regulators: int = 20, n_boot: int = 50):
    """Evaluation rows (two sizes each) and replicates: each method's replicates scatter around its ratio, all
    methods of a pair and size moved by the same draws (what paired resamples do), scaled by the method's place."""
    rng = np.random.default_rng(0)
    rows, reps = [], {}
    for (d, t), by in ratios.items():
        for size in (500, 1000):
            noise = rng.normal(0, 0.05, n_boot)
            reps[(d, t, size)] = {m: r + noise * (i + 1) for i, (m, r) in enumerate(by.items())}
            rows += [{"dataset": d, "truth": t, "split": protocol.EVALUATION, "tfs_plus": size,
                      "regulators": regulators, "method": m, "ratio": r} for m, r in by.items()]
    return rows, reps


def test_the_aggregate_is_the_median_of_pair_figures_with_paired_differences(script):
    ratios = {("a", "t1"): {"spearman": 1.0, "genie3": 1.4, "pearson": 1.1},
              ("a", "t2"): {"spearman": 1.2, "genie3": 1.1, "pearson": 1.0},
              ("b", "t1"): {"spearman": 0.9, "genie3": 1.3, "pearson": 1.2}}
    rows, reps = _pairs(ratios)
    out = script.aggregate_intervals(rows, reps)
    assert out["pairs"] == ["a × t1", "a × t2", "b × t1"]
    spearman, genie3 = out["methods"]["spearman"], out["methods"]["genie3"]
    assert spearman["aggregate"] == pytest.approx(1.0) and genie3["aggregate"] == pytest.approx(1.3)
    assert spearman["minus_genie3"] == pytest.approx(-0.3)
    low, high = spearman["aggregate_ci"]
    assert low < 1.0 < high
    assert genie3["minus_spearman_ci"][0] > 0  # GENIE3 leads by 0.3 with noise of 0.05–0.1 per pair


def test_pairs_below_the_floor_stay_out_of_the_aggregate(script):
    rows, reps = _pairs({("a", "t"): {"spearman": 2.0, "genie3": 1.0, "pearson": 1.0}}, regulators=3)
    more_rows, more_reps = _pairs({("b", "t"): {"spearman": 1.0, "genie3": 1.5, "pearson": 1.0}})
    out = script.aggregate_intervals(rows + more_rows, {**reps, **more_reps})
    assert out["pairs"] == ["b × t"]
    assert out["methods"]["spearman"]["aggregate"] == pytest.approx(1.0)
    assert script.aggregate_intervals(rows, reps) == {"pairs": [], "methods": {}}


def test_the_committed_record_s_aggregate_follows_from_its_rows():
    record = json.loads(RECORD.read_text())
    figures = protocol.pair_figures(record["rows"], protocol.EVALUATION)
    point = protocol.aggregate(figures)
    methods = record["evaluation_aggregate"]["methods"]
    assert set(methods) == set(point)
    for m, row in methods.items():
        assert row["aggregate"] == pytest.approx(point[m])
    kept = [f"{f['dataset']} × {f['truth']}" for f in figures if not f["below_floor"] and f["method"] == "spearman"]
    assert record["evaluation_aggregate"]["pairs"] == kept
    assert all(r["split"] == protocol.EVALUATION for r in record["rows"])
