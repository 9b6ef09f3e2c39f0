#!/usr/bin/env bash
# Reproduces the checkpoint shipped in the package: pre-train with scripts/shipped_small.yaml, then export an
# fp16 bundle to src/grnformer/checkpoints/small.pt, its model card, and the loss curves (benchmarks/figures/).
# Extra arguments are config overrides, e.g. training.accelerator=gpu training.precision=bf16-mixed.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
.venv/bin/grnformer pretrain --config scripts/shipped_small.yaml training.progress_bar=false "$@"
.venv/bin/python scripts/export_shipped.py runs/shipped_small --wall-seconds $(( $(date +%s) - start ))
