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

from grnformer.train.checkpoint import load_bundle, save_bundle  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from campaign import HELD_OUT  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "src" / "grnformer" / "checkpoints" / "small.pt"
FIGURE = ROOT / "benchmarks" / "figures" / "shipped_small_loss.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--ckpt", default="last.ckpt", help="file name under RUN_DIR/checkpoints")
    parser.add_argument("--ledger", type=Path, default=None,
                        help="the campaign's stretches.json: wall time and cell views of every stretch so far")
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
    stretches = json.loads(args.ledger.read_text()) if args.ledger else []
    wall = sum(s["wall_seconds"] for s in stretches)
    mine = [s for s in stretches if s["run"] == run.name]
    card = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU",
        "command": ".venv/bin/python scripts/campaign.py --minutes N",
        "sources": config["data"]["sources"],
        "n_cells": manifest["n_cells"],
        "cells_per_source": {s["name"]: s["n_cells"] for s in manifest["sources"]},
        "held_out": HELD_OUT,
        "steps": steps,
        "batch_size": batch,
        "context_length": bundle.config.context_length,
        # cell views: this run's steps x batch, plus those of the weights it was warm-started from
        "cell_views": steps * batch + (mine[0]["base_cell_views"] if mine else 0),
        "stretches": len(stretches),
        "wall_seconds": wall,
        "cpu_hours": round(sum(s["wall_seconds"] * s["threads"] for s in stretches) / 3600, 2),
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
