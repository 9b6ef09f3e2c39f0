"""Which recipe learns most per CPU-second: each trains from scratch for the same number of cell views on the
same corpus, then every final checkpoint is validated the same way (the same validation cells, fp32, context 256).

    .venv/bin/python benchmarks/bench_equal_time.py --steps 300 --corpus runs/campaign/corpus-<key>

Equal cell views rather than equal wall time: on a machine shared with other jobs, a fixed wall-time budget
measures the neighbours as much as the recipe. The loss per cell view is compared directly; the loss at equal
wall time follows from the side-by-side throughput ratios of benchmarks/bench_train_levers.py (and the wall and
CPU seconds of each arm are recorded here too).

Arms: today's recipe (fp32, dropout 0.1, plain AdamW, bottleneck on every cell), the shipped recipe
(scripts/shipped_small.yaml: bf16 autocast, no dropout, bottleneck on half the batch), and the
shipped recipe with gene embeddings initialised from the corpus's co-expression (data.corpus.gene_prior). The shipped
recipe's checkpoint is also validated under bf16 autocast, to check that bf16 leaves the loss where fp32 has it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from grnformer.bench import toolkit
from grnformer.train.pretrain import build, load_config, pretrain

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "scripts" / "shipped_small.yaml"
ARMS = {
    "today": ["training.precision=32", "model.dropout=0.1",
              "training.bottleneck_fraction=1.0"],
    "shipped recipe": [],
    "shipped recipe + co-expression prior": ["model.gene_init=coexpression"],
}


def validate(cfg: dict, ckpt: Path, precision: str) -> dict[str, float]:
    cfg = {**cfg, "training": {**cfg["training"], "precision": precision, "val_batches": 50,
                               "stop_after_minutes": None}}
    run = build(cfg)
    metrics = run.trainer.validate(run.plan, run.data, ckpt_path=str(ckpt), verbose=False)[0]
    return {k: float(v) for k, v in metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "equal_time")
    parser.add_argument("--record", default=str(toolkit.results_path("equal_time")), help="the result record")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = {}
    for name, extra in ARMS.items():
        out_dir = args.out / name.replace(" ", "_").replace("+", "plus")
        overrides = [f"out_dir={out_dir}", f"data.corpus={args.corpus}", f"training.max_steps={args.steps}",
                     f"training.warmup_steps={max(1, args.steps // 10)}", "training.val_every_n_steps=100000",
                     "training.checkpoint_every_n_steps=100000", "training.progress_bar=false", *extra]
        wall, cpu = time.perf_counter(), time.process_time()
        ckpt = pretrain(CONFIG, overrides)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        cfg = load_config(CONFIG, overrides)
        steps = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]
        rows[name] = {"steps": int(steps), "cell_views": int(steps) * int(cfg["training"]["batch_size"]),
                      "wall_seconds": wall, "cpu_seconds": cpu,
                      "val_fp32": validate(cfg, ckpt, "32-true")}
        if name == "shipped recipe":
            rows[name]["val_bf16"] = validate(cfg, ckpt, "bf16-mixed")
        print(name, json.dumps(rows[name]), flush=True)
    toolkit.write_record(args.record, {"rows": rows}, method={"config": str(CONFIG), "recipes": list(rows)})
    print("| recipe | cell views | wall s | CPU s | val loss | val denoise | val bottleneck | val cell type |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        v = r["val_fp32"]
        print(f"| {name} | {r['cell_views']} | {r['wall_seconds']:.0f} | {r['cpu_seconds']:.0f} | "
              f"{v['val/loss']:.3f} | {v['val/denoise']:.3f} | "
              f"{v['val/bottleneck']:.3f} | {v.get('val/cell_type', float('nan')):.3f} |")


if __name__ == "__main__":
    main()
