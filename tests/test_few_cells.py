"""Networks from few cells (benchmarks/bench_few_cells.py): the rule that reads the per-size rankings, and the
committed development record whose stated rule must follow from its own rows."""

import json
from pathlib import Path

import pytest
from _bench_scripts import load_script

from grnformer.bench import protocol

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "few_cells.json"


@pytest.fixture(scope="module")
def script():
    return load_script("bench_few_cells")


def _rows(ratios: dict[int, dict[str, float]]) -> list[dict]:
    """Development rows of two datasets (one truth each, 20 regulators) with the given ratio per cell count and
    method; GENIE3 slow enough that every other method passes the speed rule."""
    return [{"dataset": d, "truth": "t", "split": protocol.DEVELOPMENT, "cells": size, "seed": 0, "tfs_plus": 500,
             "regulators": 20, "method": m, "ratio": r, "seconds": 100.0 if m == "genie3" else 1.0}
            for size, by in ratios.items() for m, r in {**by, "genie3": 1.0}.items() for d in ("a", "b")]


def test_a_switch_with_the_cell_count_becomes_a_threshold(script):
    rows = _rows({50: {"spearman": 1.1, "metacell_k5+spearman": 1.3}, 100: {"spearman": 1.1,
                  "metacell_k5+spearman": 1.2}, 200: {"spearman": 1.3, "metacell_k5+spearman": 1.2}})
    out = script.few_cells_rule(rows)
    assert out["winners"] == {"50": "metacell_k5+spearman", "100": "metacell_k5+spearman", "200": "spearman"}
    assert out["rule"] == {"threshold": 200, "below": "metacell_k5+spearman", "from": "spearman"}
    assert out["rule_text"] == "below 200 cells use metacell_k5+spearman; from 200 cells, spearman"


def test_one_winner_everywhere_is_no_change_and_ties_go_to_the_cheaper(script):
    rows = _rows({50: {"spearman": 1.2, "metacell_k5+spearman": 1.205}, 100: {"spearman": 1.3}})
    rows = [{**r, "seconds": 2.0} if r["method"] == "metacell_k5+spearman" else r for r in rows]
    out = script.few_cells_rule(rows)
    assert out["rule"] == {"threshold": None, "below": "spearman", "from": "spearman"}
    assert out["rule_text"].startswith("no change: spearman wins at every size")


def test_a_winner_that_changes_twice_gives_no_rule(script):
    rows = _rows({50: {"spearman": 1.0, "pearson": 1.5}, 100: {"spearman": 1.5, "pearson": 1.0},
                  200: {"spearman": 1.0, "pearson": 1.5}})
    out = script.few_cells_rule(rows)
    assert out["rule"] == {"threshold": None, "below": "spearman", "from": "spearman"}
    assert out["rule_text"].startswith("no rule")


def test_the_committed_record_states_the_rule_its_rows_give(script):
    record = json.loads(RECORD.read_text())
    rows = record["rows"]
    assert {r["split"] for r in rows} == {protocol.DEVELOPMENT}  # chosen on development pairs only
    assert {r["dataset"] for r in rows} <= {p.dataset for p in protocol.pairs(protocol.DEVELOPMENT)}
    again = script.few_cells_rule(rows)
    for key in ("winners", "rule", "rule_text", "common_winners"):
        assert record[key] == again[key], key
    rule, won = record["rule"], record["winners"]
    for size, method in won.items():
        expected = rule["from"] if rule["threshold"] is None or int(size) >= rule["threshold"] else rule["below"]
        assert method == expected or record["rule_text"].startswith("no rule"), (size, method)
    assert record["checkpoint_digest"] and record["hashes"]["data"] and record["hashes"]["truths"]
    assert all(len({r["seed"] for r in rows if r["cells"] == int(s)}) >= 3 for s in won)
    for size, block in record["per_size"].items():  # the table's aggregates are the rows' medians
        agg = protocol.aggregate(script.size_figures(rows, int(size)))
        assert {m: b["aggregate"] for m, b in block["methods"].items()} == pytest.approx(agg)


def test_help_of_grn_states_the_committed_rule():
    """`help(grn)` says what the committed record decided about cell counts, and the default method is its
    choice at every size."""
    from grnformer.networks.grn import grn
    from grnformer.networks.grn_options import DEFAULT_METHOD

    rule = json.loads(RECORD.read_text())["rule"]
    doc = " ".join(grn.__doc__.split())
    assert "few_cells.json" in doc
    if rule["threshold"] is None:
        assert rule["below"] == rule["from"] == DEFAULT_METHOD
        assert "does not change with the number of cells" in doc and f"{DEFAULT_METHOD.capitalize()} stays" in doc
    else:
        assert f"below {rule['threshold']} cells" in doc and rule["below"] in doc
