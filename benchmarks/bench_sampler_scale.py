"""Start-up cost of an atlas-size corpus, metadata only: 1M / 10M / 50M cells.

For each size, in a fresh process: write a corpus cell table (cells.parquet + manifest, no shards: start-up never
touches them) with synthetic but atlas-shaped labels, then time and measure what a training job does before its
first step: open the `Corpus` (reads the organism and label columns), build the `LabelBalancedSampler` over the
label combinations, draw 1M indices for one rank, and draw one rank's share of a `ShardedEpochSampler` epoch
(8 ranks). Memory is the resident-set growth over the label table itself (peak of each step, Linux VmHWM reset
between steps) and the bytes the sampler keeps.

Labels per cell (6 classes, as the model's label tokens): cell type 600 leaves, disease 200, assay 30, sex 3,
ethnicity 30, organism 2. Labels are correlated in real atlases (a dataset has one assay, a few diseases), so
cells are drawn from 50,000 label combinations (each class Zipf-distributed, 10 % unknown) with Zipf weights:
a few huge combinations and a long tail, as in the CELLxGENE Census.

    .venv/bin/python benchmarks/bench_sampler_scale.py                  # 1M, 10M, 50M
    .venv/bin/python benchmarks/bench_sampler_scale.py --sizes 1000000

Tables are written under benchmarks/out/ (gitignored) and deleted after each size. Results go to
the record benchmarks/results/sampler_scale.json and print as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from grnformer.bench import toolkit
from grnformer.data.corpus.sampler import LabelBalancedSampler, ShardedEpochSampler
from grnformer.data.corpus.store import CELLS, FORMAT_VERSION, MANIFEST, SHARDS, Corpus

OUT = Path(__file__).resolve().parent / "out"
CLASSES = {"cell_type": 600, "disease": 200, "assay": 30, "sex": 3, "self_reported_ethnicity": 30, "organism": 2}
N_COMBINATIONS = 50_000
ROW_GROUP = 5_000_000


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so each step's peak is its own."""
    Path("/proc/self/clear_refs").write_text("5")


def _step(fn):
    """(result, seconds, peak RSS growth in GB over the RSS before the step)."""
    gc_base = _rss_kb("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return out, seconds, (_rss_kb("VmHWM") - gc_base) / 2**20


def write_metadata(path: Path, n: int, seed: int = 0) -> None:
    """A corpus directory holding only the cell table and manifest, written in row groups."""
    rng = np.random.default_rng(seed)
    zipf = lambda k: (1.0 / np.arange(1, k + 1)) / (1.0 / np.arange(1, k + 1)).sum()  # noqa: E731
    profiles = np.stack([rng.choice(k, size=N_COMBINATIONS, p=zipf(k)) for k in CLASSES.values()], axis=1)
    profiles[rng.random(profiles.shape) < 0.1] = -1
    profiles = profiles.astype(np.int32)
    weights = zipf(N_COMBINATIONS)
    schema = pa.schema([("cell", pa.int64()), ("dataset", pa.string()), ("obs_name", pa.string()),
                        ("shard", pa.int32()), ("row", pa.int32()), ("organism", pa.string()),
                        ("n_counts", pa.float32()), ("n_genes", pa.int32())]
                       + [(f"label_{c}", pa.int32()) for c in CLASSES])
    (path / SHARDS).mkdir(parents=True)
    with pq.ParquetWriter(path / CELLS, schema) as writer:
        for lo in range(0, n, ROW_GROUP):
            m = min(ROW_GROUP, n - lo)
            cols = {"cell": pa.array(np.arange(lo, lo + m)), "dataset": pa.array(np.full(m, "sim"), pa.string()),
                    "obs_name": pa.array(np.full(m, ""), pa.string()),
                    "shard": pa.array(((np.arange(lo, lo + m)) // 100_000).astype(np.int32)),
                    "row": pa.array(((np.arange(lo, lo + m)) % 100_000).astype(np.int32)),
                    "organism": pa.array(np.where(rng.random(m) < 0.8, "NCBITaxon:9606", "NCBITaxon:10090")),
                    "n_counts": pa.array(rng.gamma(2.0, 2000.0, m).astype(np.float32)),
                    "n_genes": pa.array(rng.integers(300, 4000, m).astype(np.int32))}
            combination = profiles[rng.choice(N_COMBINATIONS, size=m, p=weights)]
            for j, c in enumerate(CLASSES):
                cols[f"label_{c}"] = pa.array(combination[:, j])
            writer.write_table(pa.table(cols))
    shards = [{"name": f"{i:05d}", "n_cells": min(100_000, n - i * 100_000), "nnz": 0}
              for i in range(-(-n // 100_000))]
    manifest = {"format": FORMAT_VERSION, "n_cells": n, "vocab_hash": "", "vocab_size": 41_927,
                "index_dtype": "<u2", "label_classes": list(CLASSES), "label_set": None, "sources": [],
                "shards": shards, "versions": {}}
    (path / MANIFEST).write_text(json.dumps(manifest))


def measure(n: int) -> dict:
    path = OUT / f"sampler_scale_{n}"
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    write_metadata(path, n)
    write_s = time.perf_counter() - t0
    base = _rss_kb("VmRSS") / 2**20
    corpus, open_s, open_gb = _step(lambda: Corpus(path))
    label_gb = corpus.label_codes.nbytes / 2**30
    sampler, build_s, build_gb = _step(lambda: LabelBalancedSampler(corpus.label_codes, num_samples=n, s=100))
    held = sum(a.nbytes for a in (sampler.order, sampler.group_starts, sampler.group_sizes, sampler.cell_weight,
                                  sampler.group_probability)) / 2**30
    _, draw_s, draw_gb = _step(lambda: sum(1 for _ in islice(iter(sampler), 1_000_000)))
    sharded = ShardedEpochSampler(n, seed=0, rank=3, world_size=8)
    _, epoch_s, epoch_gb = _step(lambda: sum(1 for _ in sharded))
    shutil.rmtree(path)
    return {"n_cells": n, "groups": len(sampler.group_sizes), "write_table_s": write_s,
            "rss_before_open_gb": base, "corpus_open_s": open_s, "corpus_open_peak_gb": open_gb,
            "label_table_gb": label_gb, "sampler_build_s": build_s, "sampler_build_peak_gb": build_gb,
            "sampler_held_gb": held, "draw_1m_s": draw_s, "draw_1m_peak_gb": draw_gb,
            "sharded_epoch_rank_s": epoch_s, "sharded_epoch_peak_gb": epoch_gb}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000000,10000000,50000000")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    OUT.mkdir(exist_ok=True)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        res = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(res.stderr[-3000:])
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print("| cells | label combos | open s | open peak GB | label table GB | sampler build s | build peak GB | "
          "sampler holds GB | 1M draws s | sharded epoch (1 of 8 ranks) s | epoch peak GB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n_cells']:,} | {r['groups']:,} | {r['corpus_open_s']:.2f} | {r['corpus_open_peak_gb']:.2f} | "
              f"{r['label_table_gb']:.2f} | {r['sampler_build_s']:.2f} | {r['sampler_build_peak_gb']:.2f} | "
              f"{r['sampler_held_gb']:.3f} | {r['draw_1m_s']:.2f} | {r['sharded_epoch_rank_s']:.2f} | "
              f"{r['sharded_epoch_peak_gb']:.2f} |")
    toolkit.write_record("sampler_scale", {"platform": platform.platform(), "rows": rows},
                         method="LabelBalancedSampler, ShardedEpochSampler")


if __name__ == "__main__":
    main()
