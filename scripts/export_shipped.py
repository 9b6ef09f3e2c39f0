"""Export a finished pre-training run as the shipped checkpoint: fp16 bundle, model card, loss-curve PNG."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from grnformer.bundle.checkpoint import load_bundle, save_bundle  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign import HELD_OUT, LEDGER, read_ledger  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "src" / "grnformer" / "checkpoints" / "small.pt"
FIGURE = ROOT / "benchmarks" / "figures" / "shipped_small_loss.png"


def lineage(ledger: dict, run_name: str, steps: int, batch: int) -> dict:
    """The weights' lineage from the campaign ledger: each run they passed through (oldest first) with its
    stretches, steps, batch and cell views, and totals that add up: cell views = the sum over the runs of steps x
    batch. A run's steps are its last recorded step (the exported run's: ``steps``). Wall time and CPU-hours sum
    the stretches of the lineage only (not every ledger entry), plus the ledger's unattributed time of those
    stretches; a stretch whose wall time is unknown is counted as such."""
    stretches = ledger.get("stretches", [])
    runs, name = [], run_name
    while name is not None:
        mine = [s for s in stretches if s["run"] == name]
        if not mine and name != run_name:
            raise ValueError(f"the ledger has no stretch of run {name}, which the lineage continues")
        ends = [s["steps_to"] for s in mine if s.get("steps_to") is not None]
        run_steps = steps if name == run_name else max(ends)
        run_batch = batch if name == run_name else int(mine[0]["batch_size"])
        first = mine[0] if mine else {"continues": None, "how": "not in the ledger"}
        runs.append({"run": name, "how": first["how"], "continued": first["continues"], "steps": run_steps,
                     "batch_size": run_batch, "cell_views": run_steps * run_batch,
                     "stretches": [s["stretch"] for s in mine]})
        parent = first["continues"]
        name = None if parent in (None, "shipped", name) else parent
        if parent == "shipped":
            raise ValueError(f"run {runs[-1]['run']} started from the shipped card, not from a ledger run")
    runs.reverse()
    ids = {i for r in runs for i in r["stretches"]}
    known = [s for s in stretches if s["stretch"] in ids and s.get("wall_seconds") is not None]
    extra = [u for u in ledger.get("unattributed", []) if set(u["stretches"]) <= ids]
    covered = {s["stretch"] for s in known} | {i for u in extra for i in u["stretches"]}
    wall = sum(s["wall_seconds"] for s in known) + sum(u["wall_seconds"] for u in extra)
    cpu = sum(s["wall_seconds"] * s["threads"] for s in known) + sum(u["wall_seconds"] * u["threads"] for u in extra)
    return {"runs": runs, "steps": sum(r["steps"] for r in runs), "cell_views": sum(r["cell_views"] for r in runs),
            "stretches": len(ids), "wall_seconds": wall, "cpu_hours": round(cpu / 3600, 2),
            "stretches_without_wall_time": sorted(ids - covered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--ckpt", default="last.ckpt", help="file name under RUN_DIR/checkpoints")
    parser.add_argument("--ledger", type=Path, default=LEDGER,
                        help="the campaign's ledger (scripts/campaign_ledger.json): every stretch so far")
    args = parser.parse_args()
    run = args.run_dir
    bundle = load_bundle(run / "checkpoints" / args.ckpt)
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    save_bundle(bundle.model, bundle.config, bundle.vocab, bundle.labels, TARGET, dtype="float16")

    metrics = pd.concat([pd.read_csv(p) for p in sorted(run.glob("logs/version_*/metrics.csv"))])
    train = metrics.dropna(subset=["train/loss"]).groupby("step").last()
    val = metrics.dropna(subset=["val/loss"]).groupby("step").last() if "val/loss" in metrics else None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for col in ("train/denoise", "train/bottleneck"):
        axes[0].plot(train.index, train[col], label=col)
    if val is not None:
        for col in ("val/denoise", "val/bottleneck"):
            if col in val:
                axes[0].plot(val.index, val[col], "o--", label=col)
    axes[0].set_xlabel("step"), axes[0].set_ylabel("ZINB NLL per gene"), axes[0].legend()
    for col in [c for c in train.columns if c.startswith("train/") and c not in
                ("train/loss", "train/denoise", "train/bottleneck")]:
        axes[1].plot(train.index, train[col], label=col.removeprefix("train/"))
    axes[1].set_xlabel("step"), axes[1].set_ylabel("label loss"), axes[1].legend(fontsize=7)
    fig.suptitle("shipped small model, pre-training on CPU")
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=100, bbox_inches="tight")

    config = yaml.safe_load((run / "config.yaml").read_text())
    manifest = json.loads((Path(config["data"]["corpus"]) / "manifest.json").read_text())
    last = train.iloc[-1]
    steps = int(train.index.max()) + 1
    batch = int(config["training"]["batch_size"])
    ledger = read_ledger(args.ledger)
    history = lineage(ledger, run.name, steps, batch)
    card = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU",
        "command": ".venv/bin/python scripts/campaign.py --minutes N",
        "sources": config["data"]["sources"],
        "n_cells": manifest["n_cells"],
        "cells_per_source": {s["name"]: s["n_cells"] for s in manifest["sources"]},
        "held_out": HELD_OUT,
        # every optimiser step behind the weights, over all the runs of the lineage: steps x batch = cell views
        "steps": history["steps"],
        "batch_size": batch,
        "context_length": bundle.config.context_length,
        "cell_views": history["cell_views"],
        "stretches": history["stretches"],
        "wall_seconds": history["wall_seconds"],
        "cpu_hours": history["cpu_hours"],
        "lineage": {"ledger": str(args.ledger.relative_to(ROOT)) if args.ledger.is_relative_to(ROOT)
                    else str(args.ledger), "note": ledger.get("note", ""), "runs": history["runs"],
                    "stretches": [s for s in ledger["stretches"]
                                  if s["stretch"] in {i for r in history["runs"] for i in r["stretches"]}],
                    "unattributed": ledger.get("unattributed", []),
                    "stretches_without_wall_time": history["stretches_without_wall_time"]},
        "final_train": {k.removeprefix("train/"): float(v) for k, v in last.items()
                        if str(k).startswith("train/") and pd.notna(v)},
        "final_val": ({k.removeprefix("val/"): float(v) for k, v in val.iloc[-1].items()
                       if str(k).startswith("val/") and pd.notna(v)} if val is not None and len(val) else None),
        "parameters": bundle.model.get_num_params(),
        "bytes": TARGET.stat().st_size,
    }
    (TARGET.parent / "small.json").write_text(json.dumps(card, indent=2))
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
