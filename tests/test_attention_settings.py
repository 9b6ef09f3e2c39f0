"""The attention read-out's defaults (`--correction`, `--direction`) and the development rule that chooses them
(benchmarks/bench_attention_settings.py): the rule on figures where the answer is known, and grn's defaults tied
to the committed record, whose choice must follow from its own rows."""

import json
from pathlib import Path

import pytest
from _bench_scripts import load_script

from grnformer.bench import protocol
from grnformer.networks.grn import GRNOptions
from grnformer.networks.grn_options import DEFAULT_CORRECTION, DEFAULT_DIRECTION

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "attention_settings.json"


@pytest.fixture(scope="module")
def script():
    return load_script("bench_attention_settings")


def _figures(by_dataset: dict[str, dict[str, float]], regulators: int = 20) -> list[dict]:
    return [{"dataset": d, "truth": "t", "method": m, "ratio": r, "regulators": regulators, "sizes": [500],
             "below_floor": regulators < protocol.REGULATOR_FLOOR}
            for d, ratios in by_dataset.items() for m, r in ratios.items()]


def test_a_clear_lead_on_every_dataset_changes_the_setting(script):
    figures = _figures({d: {"centre_q/kq": 1.0, "none/kq": 1.3} for d in ("a", "b", "c")})
    chosen, robust = script.choose_setting(figures, in_force="centre_q/kq")
    assert chosen == "none/kq" and robust["none/kq"] == pytest.approx(1.3)


def test_a_tie_keeps_the_setting_in_force(script):
    figures = _figures({d: {"centre_q/kq": 1.0, "none/kq": 1.0 + protocol.TIE / 2} for d in ("a", "b", "c")})
    assert script.choose_setting(figures, in_force="centre_q/kq")[0] == "centre_q/kq"


def test_a_lead_carried_by_one_dataset_does_not_win(script):
    # none/kq leads only through dataset 'a'; with 'a' left out it trails, and the robust score is that worst case
    figures = _figures({"a": {"centre_q/kq": 1.0, "none/kq": 3.0}, "b": {"centre_q/kq": 1.2, "none/kq": 1.0},
                        "c": {"centre_q/kq": 1.2, "none/kq": 1.0}})
    assert script.choose_setting(figures, in_force="centre_q/kq")[0] == "centre_q/kq"


def test_grn_defaults_are_the_committed_records_choice(script):
    record = json.loads(RECORD.read_text())
    assert (record["correction"], record["direction"]) == (DEFAULT_CORRECTION, DEFAULT_DIRECTION)
    assert GRNOptions(method="mean_qk").correction == DEFAULT_CORRECTION
    # the choice follows from the record's own development rows, with the tie kept for the setting then in force
    again = script.the_rule(record["rows"], in_force=record["in_force"])
    assert again["chosen"] == record["chosen"]
    assert set(record["candidates"]) == set(again["development_robust"])
    assert all(r["split"] in (protocol.DEVELOPMENT, protocol.EVALUATION) for r in record["rows"])
    assert record["leave_one_out"] and all(v["setting"] in record["candidates"]
                                           for v in record["leave_one_out"].values())
