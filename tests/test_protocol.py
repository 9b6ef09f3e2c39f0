"""The network protocol's script (benchmarks/bench_protocol.py) and its committed record: a run of one split, the
rule that chooses the defaults, and networks/options.py's defaults tied to benchmarks/results/protocol.json."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "protocol.json"


def _script():
    spec = importlib.util.spec_from_file_location("bench_protocol", ROOT / "benchmarks" / "bench_protocol.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_protocol"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def script(monkeypatch):
    """The script with its model and networks stubbed: each dataset yields one scored row per method, so the
    orchestration (which split runs, where the choice comes from, the record) is what runs."""
    module = _script()
    seen = []

    def run_dataset(bundle, name, size, pairs, args):
        seen.append((name, size, [p.split for p in pairs], getattr(args, "chosen", None)))
        return [{"dataset": name, "truth": p.truth, "universe": p.universe, "split": p.split, "genes": 10,
                 "tfs_plus": size, "cells": 5, "regulators": 12, "true_edges": 3, "method": "pearson",
                 "seconds": 0.1, "ratio": 1.2, "ratio_ci": [1.0, 1.4], "epr": 1.0, "epr_ci": [0.5, 1.5]}
                for p in pairs]

    monkeypatch.setattr(module, "run_dataset", run_dataset)
    monkeypatch.setattr(module, "load_task_bundle", lambda path: (None, None))
    module.seen = seen
    return module


def test_an_evaluation_only_run_takes_the_choice_from_the_development_record(script, tmp_path):
    out = tmp_path / "evaluation.json"
    script.main(["--split", "evaluation", "--out", str(out), "--sizes", "500"])
    written = json.loads(out.read_text())
    committed = json.loads(RECORD.read_text())
    assert script.seen and all(set(splits) == {"evaluation"} for _, _, splits, _ in script.seen)
    assert written["chosen_fusion_weights"] == committed["chosen_fusion_weights"]
    assert {r["split"] for r in written["rows"]} == {"evaluation"}
