"""Speed of gene-network inference end to end (checkpoint + counts → network file) and of cell embedding.

One command, CPU or GPU:

    .venv/bin/python benchmarks/bench_grn.py                                    # CPU: small @ 2,000 genes
    .venv/bin/python benchmarks/bench_grn.py --shapes large medium --cells 20000  # GPU: large @ 5,000, medium @ 2,200

For each shape it times the whole job as a user runs it — load the model (a checkpoint with --ckpt, else a
random-init model of that preset: speed does not depend on the weights), read PBMC3k's raw counts (tiled to
--cells when more are asked for), grn() over the most variable genes (bf16 autocast on GPU), write the network
h5ad — then embedding throughput (cells/s through embed(), default context). Model FLOPs come from
GRNFormer.flops_per_cell (matmuls, 2 per multiply-add); utilisation is against the GPU's dense bf16 peak, or on
CPU against the fp32 GEMM rate measured on this machine at the start of the run (the CPU has no trustworthy
data-sheet peak and is shared). Fields go to the record benchmarks/results/grn_speed.json; a markdown row per
shape is printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anndata as ad
import torch

from grnformer.bench import toolkit
from grnformer.bundle.checkpoint import Bundle, load_bundle
from grnformer.data.corpus import datasets
from grnformer.data.corpus.labels import LabelSet
from grnformer.data.genes import GeneVocab
from grnformer.inference.device import resolve_device
from grnformer.model import GRNFormer, ModelConfig
from grnformer.networks.grn import GRNOptions, grn
from grnformer.networks.network_file import write_network
from grnformer.tasks.embed import embed

N_GENES = {"small": 2000, "medium": 2200, "large": 5000}
BATCH = {"cpu": {"small": 8, "medium": 4, "large": 2}, "cuda": {"small": 128, "medium": 64, "large": 16}}
# Dense bf16 tensor-core peaks (vendor data sheets), matched on the device name in this order.
PEAK_BF16 = [("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
             ("A100", 312e12), ("L40S", 362e12)]


def model_bundle(shape: str, ckpt: str | None, device: torch.device) -> Bundle:
    """The checkpoint's bundle, or a random-init model of the preset over the default vocabulary."""
    if ckpt:
        return load_bundle(ckpt, map_location=device)
    vocab = GeneVocab.default()
    config = ModelConfig.preset(shape, vocab_size=len(vocab), n_positions=vocab.n_positions, dropout=0.0)
    torch.manual_seed(0)
    model = GRNFormer(config, torch.as_tensor(vocab.positions)).to(device).eval()
    return Bundle(model, config, vocab, LabelSet({}), {})


def pbmc_cells(n_cells: int | None) -> ad.AnnData:
    """PBMC3k raw counts; tiled (fresh obs names) when more cells are asked for than it has."""
    adata = datasets.load("pbmc3k")
    if n_cells is None or n_cells == adata.n_obs:
        return adata
    if n_cells < adata.n_obs:
        return adata[:n_cells].copy()
    reps = -(-n_cells // adata.n_obs)
    tiled = ad.concat([adata] * reps, index_unique="-")[:n_cells].copy()
    tiled.var = adata.var.copy()
    return tiled


def peak_flops(device: torch.device, precision: str) -> tuple[float, str]:
    """(peak FLOP/s, where it comes from) for utilisation."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in PEAK_BF16:
            if key in name:
                return peak, f"{name} dense bf16 data-sheet peak"
        return float("nan"), f"{name}: no data-sheet peak known"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 2.0:
        a @ b
        n += 1
    rate = n * 2 * 2048 ** 3 / (time.perf_counter() - start)
    return rate, f"measured {str(dtype).removeprefix('torch.')} 2048² GEMM on {torch.get_num_threads()} threads"


def run_shape(shape: str, args: argparse.Namespace, device: torch.device, peak: float) -> dict[str, Any]:
    n_genes = args.n_genes or N_GENES[shape]
    batch = args.batch_size or BATCH[device.type][shape]
    out_dir = Path(tempfile.mkdtemp(prefix="bench_grn_"))
    if device.type == "cuda":  # kernels and allocator warmed on a few cells, outside the timings
        warm = model_bundle(shape, args.ckpt, device)
        grn(warm, pbmc_cells(2 * batch), GRNOptions(genes="hvg", n_genes=n_genes, batch_size=batch,
                                                    precision=args.precision), device=device, progress=False)
        torch.cuda.synchronize()

    t0 = time.perf_counter()
    bundle = model_bundle(shape, args.ckpt, device)
    t_model = time.perf_counter()
    adata = pbmc_cells(args.cells)
    t_data = time.perf_counter()
    net = grn(bundle, adata, GRNOptions(genes="hvg", n_genes=n_genes, batch_size=batch, precision=args.precision),
              device=device, progress=not args.quiet)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_grn = time.perf_counter()
    write_network(net, out_dir / "network.h5ad")
    t_end = time.perf_counter()

    n_cells = net.uns["grn"]["n_cells"]
    n_contexts = net.uns["grn"]["n_contexts_per_cell"]
    context = -(-n_genes // n_contexts)
    flops_cell = n_contexts * bundle.model.flops_per_cell(context)
    grn_rate = n_cells / (t_grn - t_data)
    row: dict[str, Any] = {
        "shape": shape, "n_genes": n_genes, "n_cells": n_cells, "contexts_per_cell": n_contexts,
        "batch_size": batch, "precision": args.precision, "checkpoint": args.ckpt or "random init",
        "seconds_total": t_end - t0, "seconds_load_model": t_model - t0, "seconds_load_data": t_data - t_model,
        "seconds_grn": t_grn - t_data, "seconds_write": t_end - t_grn,
        "grn_cells_per_s": grn_rate, "end_to_end_cells_per_s": n_cells / (t_end - t0),
        "gflop_per_cell": flops_cell / 1e9, "achieved_tflops": grn_rate * flops_cell / 1e12,
        "utilisation": grn_rate * flops_cell / peak,
        "network_file_mb": (out_dir / "network.h5ad").stat().st_size / 1e6,
    }
    if not args.skip_embed:
        emb_cells = adata if args.embed_cells is None else adata[: args.embed_cells].copy()
        t = time.perf_counter()
        embed(bundle, emb_cells, batch_size=batch, device=device, precision=args.precision, progress=not args.quiet)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rate = emb_cells.n_obs / (time.perf_counter() - t)
        emb_flops = bundle.model.flops_per_cell(bundle.config.context_length)
        row.update({"embed_cells": emb_cells.n_obs, "embed_context": bundle.config.context_length,
                    "embed_cells_per_s": rate, "embed_utilisation": rate * emb_flops / peak})
    if device.type == "cuda":
        row["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=None, choices=list(N_GENES),
                   help="default: small on CPU, large and medium on GPU")
    p.add_argument("--ckpt", help="checkpoint to load (default: random-init model of each preset)")
    p.add_argument("--cells", type=int, default=None, help="cells (PBMC3k tiled when above 2,700; default 2,700)")
    p.add_argument("--n-genes", dest="n_genes", type=int, help="network genes (default per shape)")
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--device")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--embed-cells", dest="embed_cells", type=int, help="cells for the embedding timing")
    p.add_argument("--skip-embed", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", default=str(toolkit.results_path("grn_speed")))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    shapes = args.shapes or (["large", "medium"] if device.type == "cuda" else ["small"])
    precision_used = "bf16" if args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda") \
        else "fp32"
    peak, peak_source = peak_flops(device, precision_used)
    rows = [run_shape(s, args, device, peak) for s in shapes]
    meta = {"device": str(device), "peak_flops": peak, "peak_source": peak_source,
            "threads": torch.get_num_threads(), "torch": torch.__version__}
    toolkit.write_record(args.out, {"meta": meta, "rows": rows},
                         method={"shapes": shapes, "precision": precision_used}, command=toolkit.command_line(argv))
    print(f"peak for utilisation: {peak / 1e12:.3g} TFLOP/s ({peak_source})")
    print("| shape | genes | cells | total s | grn cells/s | GFLOP/cell | TFLOP/s | util. | embed cells/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['n_genes']} | {r['n_cells']} | {r['seconds_total']:.1f} | "
              f"{r['grn_cells_per_s']:.1f} | {r['gflop_per_cell']:.2f} | {r['achieved_tflops']:.3g} | "
              f"{r['utilisation']:.1%} | {r.get('embed_cells_per_s', float('nan')):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
