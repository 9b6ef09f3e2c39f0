"""Atlas-size inputs: wall time and peak memory of the default `grn` (Spearman, streamed from the file), the
attention network (mean_qk) and embed as the cells grow, and the speed-up of two ranks on the attention network.

Cells are resampled from real PBMC sets in shared/data/counts (pbmc_10x_v3_1k, pbmc_10x_v2_1k, pbmc_10x_5prime_1k,
pisces_pbmc_10x_1k, zheng2017_frozen_pbmc_donorA_10x: 6,700 cells, each prepared onto the vocabulary): each new
cell is a pool cell drawn with replacement whose counts are binomially thinned with a keep rate drawn uniformly in
[0.5, 1] (so no two cells are copies). The file holds the 5,000 genes with the most counts in the pool (a
1M-cell file of all genes would pass 15 GB of disk here); it is written chunk by chunk as a CSR h5ad.

Each measurement is its own process through the package's file entries (`grn_file`, `embed_file`), timed from
outside, with its peak resident memory (ru_maxrss) reported by itself; the two-rank run is the CLI under
`torchrun --standalone --nproc-per-node 2` (gloo) against the same CLI command with one rank, both timed from
outside (process start-up and model loading included). Every run uses one
torch/BLAS thread per process. Spearman runs streamed at every size (the same code path; `grn` switches to it on
its own above 1 GiB) and in memory up to 100k cells, for the memory it saves.

    .venv/bin/python benchmarks/bench_atlas_scale.py --model-sizes 500 1000 --ranks-cells 1000   # the record's
    .venv/bin/python benchmarks/bench_atlas_scale.py --grn-sizes 3000 --model-sizes 100 --ranks-cells 100
    # on a lent GPU (model tasks only; the data network has no GPU part; --ranks-cells needs a GPU per rank):
    .venv/bin/python benchmarks/bench_atlas_scale.py --grn-sizes --model-sizes 100000 1000000 \\
        --ranks-cells 0 --device cuda --record atlas_scale_gpu

Files live under benchmarks/out/ (gitignored) and are deleted at the end unless --keep. The record goes to
benchmarks/results/atlas_scale.json and prints as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import write_elem

from grnformer.bench import toolkit

OUT = Path(__file__).resolve().parent / "out" / "atlas_scale"
POOL = ("pbmc_10x_v3_1k", "pbmc_10x_v2_1k", "pbmc_10x_5prime_1k", "pisces_pbmc_10x_1k",
        "zheng2017_frozen_pbmc_donorA_10x")
PANEL = 5_000
CHUNK = 50_000

# What each measured process runs: a grn or embed file entry, then its own peak RSS and the seconds of the call.
CHILD = """
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import torch
torch.set_num_threads(1)
from grnformer.networks import streaming_correlation as sc
kind, src, out, stream, device = sys.argv[1:6]
n_cells = int(sys.argv[6]) if len(sys.argv) > 6 else None
sc.STREAM_ABOVE_BYTES = 0 if stream == "stream" else 10 ** 15
t = time.perf_counter()
if kind == "embed":
    from grnformer.tasks.embed import embed_file
    embed_file("shipped", src, out, device=device, progress=False)
else:
    from grnformer.networks.files import grn_file
    from grnformer.networks.grn import GRNOptions
    grn_file("shipped", src, out, GRNOptions(method=kind), device=device, progress=False)
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}))
"""


def pool_counts() -> tuple[sp.csr_matrix, pd.Index]:
    """The pool's prepared counts on the PANEL genes with most counts (cells × genes, CSR float32)."""
    from grnformer.data.input.prepare import prepare
    from grnformer.data.shared import shared_path

    parts = []
    for name in POOL:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parts.append(prepare(str(shared_path(f"counts/{name}.h5ad")))[0])
    genes = pd.Index(sorted(set().union(*(p.var_names for p in parts))))
    x = sp.vstack([p.X @ _columns(p.var_names, genes) for p in parts]).tocsr()
    panel = np.sort(np.argsort(-np.asarray(x.sum(axis=0)).ravel(), kind="stable")[:PANEL])
    return x[:, panel].astype(np.float32).tocsr(), genes[panel]


def _columns(have: pd.Index, genes: pd.Index) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(have), np.float32), (np.arange(len(have)), genes.get_indexer(have))),
                         shape=(len(have), len(genes)))


def write_atlas(path: Path, pool: sp.csr_matrix, genes: pd.Index, n_cells: int, seed: int = 0) -> dict:
    """A CSR h5ad of ``n_cells`` resampled, thinned pool cells, written CHUNK cells at a time."""
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        x = f.create_group("X")
        x.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (n_cells, len(genes))})
        data = x.create_dataset("data", (0,), np.float32, maxshape=(None,), chunks=(1 << 20,))
        indices = x.create_dataset("indices", (0,), np.int32, maxshape=(None,), chunks=(1 << 20,))
        indptr, nnz = [np.zeros(1, np.int64)], 0
        for start in range(0, n_cells, CHUNK):
            n = min(CHUNK, n_cells - start)
            rows = pool[rng.integers(0, pool.shape[0], n)]
            keep = np.repeat(rng.uniform(0.5, 1.0, n), np.diff(rows.indptr))
            rows.data = rng.binomial(rows.data.astype(np.int64), keep).astype(np.float32)
            rows.eliminate_zeros()
            data.resize((nnz + rows.nnz,))
            indices.resize((nnz + rows.nnz,))
            data[nnz:], indices[nnz:] = rows.data, rows.indices
            indptr.append(rows.indptr[1:] + nnz)
            nnz += rows.nnz
        indptr = np.concatenate(indptr)  # scipy wants indices and indptr of one type: int32 while it fits
        x.create_dataset("indptr", data=indptr.astype(np.int32) if nnz < 2 ** 31 else indptr)
        write_elem(f, "obs", pd.DataFrame(index=pd.Index([f"c{i}" for i in range(n_cells)])))
        write_elem(f, "var", pd.DataFrame(index=genes))
        for key in ("layers", "obsm", "varm", "obsp", "varp", "uns"):
            write_elem(f, key, {})
    return {"cells": n_cells, "nnz_per_cell": nnz / n_cells, "disk_gb": path.stat().st_size / 2 ** 30,
            "write_s": time.perf_counter() - t}


def measure(kind: str, src: Path, stream: bool, device: str) -> dict:
    """Run one file entry in a fresh process; (wall seconds from outside, the call's seconds, its peak RSS)."""
    out = src.with_name(f"{src.stem}.{kind}.{'stream' if stream else 'memory'}.h5ad")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, kind, str(src), str(out), "stream" if stream else "memory",
                           device], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode:
        return {"error": done.stderr[-2000:]}
    out.unlink(missing_ok=True)
    return {"wall_s": wall, **json.loads(done.stdout.strip().splitlines()[-1])}


def measure_ranks(src: Path, ranks: int, device: str) -> dict:
    """`grnformer grn --method mean_qk` under torchrun with ``ranks`` processes (one thread each)."""
    out = src.with_name(f"{src.stem}.ranks{ranks}.h5ad")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
           "-m", "grnformer.cli", "grn", "shipped", str(src), str(out), "--method", "mean_qk", "--device", device]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode or not out.exists():
        return {"error": done.stderr[-2000:]}
    out.unlink()
    return {"wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grn-sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--memory-up-to", type=int, default=100_000, help="largest size also run in memory")
    p.add_argument("--model-sizes", type=int, nargs="*", default=[500, 1_000])
    p.add_argument("--ranks-cells", type=int, default=1_000, help="cells of the 1-rank / 2-rank mean_qk runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--record", default="atlas_scale")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    pool, genes = pool_counts()
    rows: list[dict] = []
    files: dict[int, dict] = {}

    def atlas(n: int) -> Path:
        path = OUT / f"atlas_{n}.h5ad"
        if n not in files:
            files[n] = write_atlas(path, pool, genes, n, seed=n)
            print(f"wrote {n:,} cells: {files[n]}", flush=True)
        return path

    def save() -> Path:  # after every row, so that a run stopped at the deadline keeps what it measured
        body = {"pool": list(POOL), "panel_genes": PANEL, "files": {str(k): v for k, v in files.items()},
                "rows": rows, "ratios": ratios(rows),
                "note": "2 cores shared with other sessions' jobs: absolute times are not this code's alone; "
                        "ratios measured side by side in one run"}
        print(rows[-1], flush=True)
        return toolkit.write_record(args.record, body, method={"bench": "atlas_scale", "panel": PANEL},
                                    checkpoint="shipped")

    for n in args.model_sizes:
        for kind in ("mean_qk", "embed"):
            rows.append({"task": kind, "how": "1 process", "cells": n,
                         **measure(kind, atlas(n), False, args.device)})
            path = save()
    if args.ranks_cells:
        for ranks in (1, 2):
            rows.append({"task": "mean_qk", "how": f"torchrun, {ranks} rank(s)", "cells": args.ranks_cells,
                         **measure_ranks(atlas(args.ranks_cells), ranks, args.device)})
            path = save()
    for n in args.grn_sizes:
        src = atlas(n)
        for stream in (True, False) if n <= args.memory_up_to else (True,):
            rows.append({"task": "grn spearman", "how": "streamed" if stream else "in memory", "cells": n,
                         **measure("spearman", src, stream, args.device)})
            path = save()
        os.remove(src)
    print(table(rows))
    print(json.dumps(ratios(rows), indent=1))
    print(f"record: {path}")
    if not args.keep:
        shutil.rmtree(OUT, ignore_errors=True)
    return 0


def ratios(rows: list[dict]) -> dict:
    """Peak RSS and time per cell against the next smaller size (streamed grn; model tasks in one process), and
    the two-rank speed-up."""
    out = {}
    for task, how in (("grn spearman", "streamed"), ("mean_qk", "1 process"), ("embed", "1 process")):
        runs = sorted((r for r in rows if r["task"] == task and r["how"] == how and "error" not in r),
                      key=lambda r: r["cells"])
        for a, b in zip(runs, runs[1:]):
            out[f"{task}: {b['cells']:,} vs {a['cells']:,}"] = {
                "peak_rss": b["peak_rss_gb"] / a["peak_rss_gb"],
                "time_per_cell": (b["seconds"] / b["cells"]) / (a["seconds"] / a["cells"])}
    ranked = {r["how"]: r for r in rows if r["task"] == "mean_qk" and r["how"].startswith("torchrun")}
    if len(ranked) == 2 and all("error" not in r for r in ranked.values()):
        out["mean_qk 2 ranks speed-up"] = ranked["torchrun, 1 rank(s)"]["wall_s"] / ranked["torchrun, 2 rank(s)"][
            "wall_s"]
    return out


def table(rows: list[dict]) -> str:
    lines = ["| task | how | cells | wall s | call s | peak RSS GiB |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['task']} | {r['how']} | {r['cells']:,} | error | | |")
            continue
        lines.append(f"| {r['task']} | {r['how']} | {r['cells']:,} | {r['wall_s']:.1f} | "
                     f"{r.get('seconds', float('nan')):.1f} | {r.get('peak_rss_gb', float('nan')):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
