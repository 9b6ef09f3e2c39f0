"""Streaming throughput of the data path: corpus shards → label-balanced sampler → collator → DataLoader.

Builds corpora of 100,000 and 1,000,000 cells by resampling the real prepared datasets (pbmc3k, retina, the PBMC
sets and the mouse pancreas of shared/data/counts), streamed into shards one piece at a time, then reads a fixed
number of cells from each in label-balanced random order through a 2-worker DataLoader into batches of 2,200-gene
contexts with 55-70 % down-sampling (the pre-training setting). Reports cells/s (median and best of --repeat
runs: the 2 cores are shared), the CPU time spent per cell by the main process and its workers (what the
throughput on 2 dedicated cores is bound by: at most 2 / that), and peak memory (anonymous and file-backed resident
memory of the main process plus its workers, summed) for both sizes, to show memory does not grow with the corpus.

    .venv/bin/python benchmarks/bench_streaming.py                   # 100k and 1M, 100k cells read from each
    .venv/bin/python benchmarks/bench_streaming.py --sizes 100000 --read 20000
    .venv/bin/python benchmarks/bench_streaming.py --soma 100000     # SOMA experiment vs shard store

Corpora live under benchmarks/out/ (gitignored) and are deleted at the end unless --keep. Results go to
the record benchmarks/results/streaming.json (streaming_soma.json with --soma) and print as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from grnformer.bench import toolkit
from grnformer.data.collate import CellRecord, Collator
from grnformer.data.corpus import datasets
from grnformer.data.corpus.build import build_corpus
from grnformer.data.corpus.labels import LabelSet, column
from grnformer.data.corpus.sampler import LabelBalancedSampler, ShardedEpochSampler
from grnformer.data.corpus.silver import add_training_labels
from grnformer.data.corpus.store import Corpus
from grnformer.data.input.prepare import ORGANISM_COLUMN, prepare
from grnformer.errors import InputError

OUT = Path(__file__).resolve().parent / "out"
POOL = ("pbmc3k", "retina", "pbmc_soupx", "pbmc_ifnb", "pbmc_10x_v2_1k", "pbmc_10x_v3_1k", "pbmc_10x_5prime_1k",
        "mouse_pancreas_e155")
LABEL_CLASSES = ("cell_type", "assay", "organism")
SOMA_RANDOM_CELLS = 4096


# --------------------------------------------------------------------------------------------- resampling

def real_pool() -> dict[str, AnnData]:
    """The prepared real datasets with their training labels (CELLxGENE for retina, silver for the others), with
    only the obs columns the corpus keeps (organism, labels)."""
    pool = {}
    for name in POOL:
        a = prepare(add_training_labels(name, datasets.load(name)))[0]
        keep = [c for c in dict.fromkeys([ORGANISM_COLUMN] + [column(c) for c in LABEL_CLASSES]) if c in a.obs]
        pool[name] = AnnData(a.X, obs=a.obs[keep].copy(), var=a.var[[]].copy())
    return pool


def resampled(pool: dict[str, AnnData], n_cells: int, chunk: int, seed: int) -> Iterator[AnnData]:
    """AnnData pieces totalling n_cells, cells drawn with replacement in proportion to dataset size; one dataset
    per piece (named in uns, as `datasets.load` does) because a source has one organism."""
    rng = np.random.default_rng(seed)
    names = list(pool)
    share = np.array([pool[n].n_obs for n in names], dtype=float)
    share /= share.sum()
    for start in range(0, n_cells, chunk):
        counts = rng.multinomial(min(chunk, n_cells - start), share)
        for name, m in zip(names, counts):
            if m == 0:
                continue
            src = pool[name]
            idx = np.sort(rng.integers(0, src.n_obs, m))
            obs = src.obs.iloc[idx].copy()
            obs.index = pd.Index([f"{name}-{start}-{i}" for i in range(m)])
            yield AnnData(src.X[idx], obs=obs, var=src.var, uns={"grnformer_dataset": name})


def build(n_cells: int, out: Path, pool: dict[str, AnnData], labels: LabelSet) -> dict:
    t0 = time.perf_counter()
    corpus = build_corpus(resampled(pool, n_cells, 50_000, seed=n_cells), out, label_set=labels,
                          shard_size=100_000, chunk_cells=50_000, overwrite=True)
    seconds = time.perf_counter() - t0
    disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    nnz = sum(s["nnz"] for s in corpus.manifest["shards"])
    return {"n_cells": len(corpus), "build_s": seconds, "disk_gb": disk / 1e9, "nnz_per_cell": nnz / len(corpus),
            "shards": len(corpus.manifest["shards"]), "build_peak_rss_gb": _self_peak_gb()}


# ----------------------------------------------------------------------------------------------- memory

def _status(pid: int) -> dict[str, int]:
    """RssAnon / RssFile / VmHWM of a process in kB (0 when it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _self_peak_gb() -> float:
    return _status(os.getpid()).get("VmHWM", 0) / 2**20


class MemoryMonitor(threading.Thread):
    """Samples the resident memory and CPU time of this process and its DataLoader workers every 0.1 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_anon = self.peak_file = self.peak_total = 0
        self.cpu: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.is_set():
            pids = [me] + _children(me)
            for p in pids:
                self.cpu[p] = max(self.cpu.get(p, 0.0), _cpu_seconds(p))
            stats = [_status(p) for p in pids]
            anon = sum(s.get("RssAnon", 0) for s in stats)
            file = sum(s.get("RssFile", 0) for s in stats)
            self.peak_anon, self.peak_file = max(self.peak_anon, anon), max(self.peak_file, file)
            self.peak_total = max(self.peak_total, anon + file)
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------- streaming

def _measure(loader, n_expected: int, open_s: float) -> dict:
    monitor = MemoryMonitor()
    monitor.start()
    t0 = time.perf_counter()
    it = iter(loader)
    first = next(it)
    t_first = time.perf_counter()
    time.sleep(0.2)  # let the monitor see the workers
    cpu_first = dict(monitor.cpu)
    n = expressed = 0
    for batch in it:
        n += len(batch["depth"])
        expressed += int((batch["target"] > 0).sum())
    t_end = time.perf_counter()
    monitor.stop.set()
    monitor.join()
    cpu = sum(v - cpu_first.get(p, 0.0) for p, v in monitor.cpu.items())
    assert n + len(first["depth"]) == n_expected, (n, n_expected)
    return {"cells_read": n_expected, "open_s": open_s, "first_batch_s": t_first - t0,
            "cells_per_s": n / (t_end - t_first), "expressed_in_context": expressed / max(n, 1),
            "cpu_ms_per_cell": 1e3 * cpu / max(n, 1),
            "peak_rss_anon_gb": monitor.peak_anon / 2**20, "peak_rss_file_gb": monitor.peak_file / 2**20,
            "peak_rss_total_gb": monitor.peak_total / 2**20}


def stream(path: Path, n_read: int, workers: int, batch: int, context: int, seed: int) -> dict:
    """Label-balanced random reads of n_read cells into collated batches (run in a fresh process)."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    corpus = Corpus(path)
    sampler = LabelBalancedSampler(corpus.label_codes, num_samples=n_read, s=100, seed=seed)
    open_s = time.perf_counter() - t0
    collate = Collator(corpus.vocab, context_length=context, downsample=(0.55, 0.7), seed=seed)
    loader = torch.utils.data.DataLoader(corpus, batch_size=batch, sampler=sampler, num_workers=workers,
                                         collate_fn=collate, prefetch_factor=4 if workers else None)
    return {"corpus_cells": len(corpus), **_measure(loader, n_read, open_s)}


class SomaStream(torch.utils.data.IterableDataset):
    """Blocks of ``block_size`` consecutive cells of a `SomaCells`, in a shuffled order that changes per epoch.

    The block reader this benchmark compares with `SomaCells`' random batches: far fewer, larger X queries. It
    lives here, not in `grnformer.data`, because pre-training does not use it: it has no label balancing and no
    exact resume (docs/TRAINING.md).

    Blocks go round-robin to ranks, then to the DataLoader workers of a rank, so each cell reaches exactly one
    worker of one rank per epoch. With ``even=True`` a rank with fewer cells repeats cells of its first block
    until it has as many as the busiest rank (DDP needs equal step counts); cells without counts in vocabulary
    genes are skipped, so lengths can fall short by those.
    """

    def __init__(self, cells, block_size: int = 1024, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, even: bool = True) -> None:
        if block_size < 1:
            raise InputError(f"block_size must be positive, got {block_size}.")
        if world_size < 1 or not 0 <= rank < world_size:
            raise InputError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}.")
        self.cells, self.block_size, self.shuffle, self.seed = cells, int(block_size), shuffle, int(seed)
        self.rank, self.world_size, self.even = int(rank), int(world_size), even
        self.epoch = 0
        if -(-len(cells) // self.block_size) < self.world_size:
            raise InputError(f"{len(cells)} cells make fewer blocks of {self.block_size} than the {world_size} "
                             "ranks: lower block_size.")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rank_blocks(self) -> list[np.ndarray]:
        """Block start offsets of every rank this epoch."""
        starts = np.arange(0, len(self.cells), self.block_size)
        if self.shuffle:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.epoch,)))
            starts = starts[rng.permutation(len(starts))]
        return [starts[r::self.world_size] for r in range(self.world_size)]

    def _size(self, starts: np.ndarray) -> int:
        return int(np.minimum(starts + self.block_size, len(self.cells)).sum() - starts.sum())

    def __len__(self) -> int:
        sizes = [self._size(s) for s in self._rank_blocks()]
        return max(sizes) if self.even else sizes[self.rank]

    def __iter__(self) -> Iterator[CellRecord]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        all_blocks = self._rank_blocks()
        mine = all_blocks[self.rank]
        for start in mine[worker::n_workers]:
            yield from self._block(int(start))
        if self.even and worker == 0:
            missing = max(self._size(s) for s in all_blocks) - self._size(mine)
            while missing > 0:  # at most one block: block counts per rank differ by at most one
                repeat = self._block(int(mine[0]))[:missing]
                yield from repeat
                missing -= max(len(repeat), 1)

    def _block(self, start: int) -> list[CellRecord]:
        rows = np.arange(start, min(start + self.block_size, len(self.cells)))
        if self.shuffle:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self.epoch, start)))
            rows = rows[rng.permutation(len(rows))]
        return [r for r in self.cells.read(rows) if len(r.genes)]


def stream_soma(uri: str, corpus_path: Path, workers: int, batch: int, context: int, seed: int) -> dict:
    """The same cells read three ways: one epoch of SOMA blocks (SomaStream), SOMA random batches (SomaCells in
    ShardedEpochSampler order; only the first SOMA_RANDOM_CELLS cells, it is slow) and one epoch of the shard
    store in random order (Corpus + ShardedEpochSampler)."""
    from grnformer.data.corpus.soma import SomaCells

    torch.set_num_threads(1)
    corpus = Corpus(corpus_path)
    collate = Collator(corpus.vocab, context_length=context, downsample=(0.55, 0.7), seed=seed)
    prefetch = 4 if workers else None
    random_subset = list(islice(ShardedEpochSampler(len(corpus), seed=seed), SOMA_RANDOM_CELLS))
    t0 = time.perf_counter()
    cells = SomaCells(uri, vocab=corpus.vocab, label_set=corpus.label_set)
    open_s = time.perf_counter() - t0
    loaders = {
        "soma_blocks": torch.utils.data.DataLoader(SomaStream(cells, block_size=1024, seed=seed), batch_size=batch,
                                                   num_workers=workers, collate_fn=collate, prefetch_factor=prefetch),
        "soma_random": torch.utils.data.DataLoader(cells, batch_size=batch, num_workers=workers, collate_fn=collate,
                                                   sampler=random_subset, prefetch_factor=prefetch),
        "shards_random": torch.utils.data.DataLoader(corpus, batch_size=batch, num_workers=workers,
                                                     collate_fn=collate, prefetch_factor=prefetch,
                                                     sampler=ShardedEpochSampler(len(corpus), seed=seed)),
    }
    return {name: _measure(loader, len(random_subset) if name == "soma_random" else len(corpus),
                           open_s if name.startswith("soma") else 0.0)
            for name, loader in loaders.items()}


def _in_subprocess(args: list[str]) -> dict:
    """Run one measurement in a fresh interpreter so its peak memory is its own."""
    res = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"measurement failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def build_soma(n_cells: int, root: Path, pool: dict[str, AnnData], labels: LabelSet) -> dict:
    """A SOMA experiment and a shard corpus holding the same resampled human cells."""
    import anndata
    import tiledbsoma.io

    human = {k: v for k, v in pool.items() if k != "mouse_pancreas_e155"}
    pieces = list(resampled(human, n_cells, n_cells, seed=7))
    var_names = sorted(set().union(*(set(a.var_names) for a in pieces)))
    adata = anndata.concat(pieces, join="outer", merge=None)
    adata = adata[:, var_names].copy()
    adata.var["feature_id"] = adata.var_names
    h5ad = root / "soma_source.h5ad"
    adata.write_h5ad(h5ad)
    t0 = time.perf_counter()
    uri = str(root / "soma_exp")
    tiledbsoma.io.from_h5ad(uri, str(h5ad), measurement_name="RNA", X_layer_name="raw")
    soma_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_corpus({"resampled": h5ad}, root / "soma_corpus", label_set=labels, overwrite=True)
    shard_s = time.perf_counter() - t0
    h5ad.unlink()
    size = lambda p: sum(f.stat().st_size for f in Path(p).rglob("*") if f.is_file()) / 1e9  # noqa: E731
    return {"n_cells": adata.n_obs, "soma_write_s": soma_s, "shard_build_s": shard_s,
            "soma_disk_gb": size(uri), "shard_disk_gb": size(root / "soma_corpus"), "uri": uri}


# ------------------------------------------------------------------------------------------------- driver

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="corpus sizes to build, comma-separated")
    p.add_argument("--read", type=int, default=100_000, help="cells streamed from each corpus")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--context", type=int, default=2200)
    p.add_argument("--soma", type=int, default=0, help="instead: SOMA vs shards on this many cells")
    p.add_argument("--repeat", type=int, default=3, help="streaming runs per corpus (median and best reported: "
                   "the 2 cores are shared)")
    p.add_argument("--keep", action="store_true", help="keep the corpora under benchmarks/out/")
    p.add_argument("--stream", help=argparse.SUPPRESS)  # internal: measure one corpus in this process
    p.add_argument("--stream-soma", help=argparse.SUPPRESS)
    args = p.parse_args()
    common = (args.workers, args.batch, args.context, 0)
    if args.stream:
        print(json.dumps(stream(Path(args.stream), args.read, *common)))
        return
    if args.stream_soma:
        uri, corpus = args.stream_soma.split("::")
        print(json.dumps(stream_soma(uri, Path(corpus), *common)))
        return

    OUT.mkdir(exist_ok=True)
    pool = real_pool()
    labels = LabelSet.fit(pool.values(), classes=LABEL_CLASSES)
    flags = ["--workers", str(args.workers), "--batch", str(args.batch), "--context", str(args.context)]
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__}
    rows = []
    if args.soma:
        root = OUT / "soma_bench"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        info = build_soma(args.soma, root, pool, labels)
        res = _in_subprocess(["--stream-soma", f"{info['uri']}::{root / 'soma_corpus'}", *flags])
        rows = [{"source": k, **info, **v} for k, v in res.items()]
        print("| reader | cells | disk GB | write s | cells read | cells/s | CPU ms/cell | peak RSS anon GB | "
              "peak RSS file GB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            disk, write = (r["soma_disk_gb"], r["soma_write_s"]) if r["source"].startswith("soma") else \
                (r["shard_disk_gb"], r["shard_build_s"])
            print(f"| {r['source']} | {r['n_cells']:,} | {disk:.2f} | {write:.0f} | {r['cells_read']:,} | "
                  f"{r['cells_per_s']:,.0f} | {r['cpu_ms_per_cell']:.3f} | {r['peak_rss_anon_gb']:.2f} | "
                  f"{r['peak_rss_file_gb']:.2f} |")
        if not args.keep:
            shutil.rmtree(root)
    else:
        for size in [int(s) for s in args.sizes.split(",")]:
            path = OUT / f"corpus_{size}"
            info = build(size, path, pool, labels)
            runs = [_in_subprocess(["--stream", str(path), "--read", str(args.read), *flags])
                    for _ in range(args.repeat)]
            speeds = sorted(r["cells_per_s"] for r in runs)
            rows.append({**info, **runs[-1], "runs_cells_per_s": speeds, "cells_per_s": float(np.median(speeds)),
                         "best_cells_per_s": speeds[-1],
                         "cpu_ms_per_cell": float(np.median([r["cpu_ms_per_cell"] for r in runs])),
                         **{k: max(r[k] for r in runs) for k in runs[0] if k.startswith("peak_")}})
            if not args.keep:
                shutil.rmtree(path)
        print("| corpus cells | build s | disk GB | nnz/cell | open s | cells/s median (best) | CPU ms/cell | "
              "peak RSS anon GB | peak RSS file GB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['n_cells']:,} | {r['build_s']:.0f} | {r['disk_gb']:.2f} | {r['nnz_per_cell']:.0f} | "
                  f"{r['open_s']:.2f} | {r['cells_per_s']:,.0f} ({r['best_cells_per_s']:,.0f}) | "
                  f"{r['cpu_ms_per_cell']:.3f} | "
                  f"{r['peak_rss_anon_gb']:.2f} | {r['peak_rss_file_gb']:.2f} |")
    toolkit.write_record("streaming_soma" if args.soma else "streaming",
                         {"host": machine, "args": vars(args), "rows": rows}, method={"read": args.read})


if __name__ == "__main__":
    main()
