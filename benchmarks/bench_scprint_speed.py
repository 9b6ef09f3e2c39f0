"""grnformer's engine against scPRINT's own class on the same weights: outputs at full shape, and speed (issue 27).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scprint_speed.py [--shape medium] [--cells 4] [--repeats 3]
        [--venv benchmarks/out/scprint-venv] [--device cpu|cuda] [--layout v1|v2]

scPRINT's class (scprint 2.3.8, simpler-flash 1.0.7) is built with random weights at the published shape (medium:
d 256, 8 layers, 4 heads; every gene of grnformer's vocabulary, 41,927, as the published tables hold ~45k) and
saved as a Lightning checkpoint; grnformer converts that file (`load_bundle`, the path `grnformer.load` and
`import-scprint` take). Both run in this process, grnformer's environment: scPRINT's packages come from the
throwaway venv that scripts/make_scprint_fixture.py builds (only scprint, simpler_flash and einops are linked in;
its heavy imports are stand-ins the forward pass never touches), so both use the same torch.

Inputs: PBMC3k cells, contexts of 2,200 genes (grnformer's collator, expressed genes first), fp32, no gradients.
Workloads, each timed alternately A/B/A/B in one run (the ratio is robust to a shared machine's load):
- forward: ZINB outputs (scPRINT: its default call; grnformer: the model's forward);
- embed + classify: plus the label logits (scPRINT: do_class=True; grnformer computes them in every forward);
- q/k extraction for networks: every layer's queries and keys (scPRINT: get_attention_layer=all layers).
Parity at this shape: the largest difference of each output relative to its scale. On a GPU (--device cuda) the
record holds absolute times only, as the issue asks. Record: benchmarks/results/scprint_speed[_SHAPE].json.
--layout v2: scPRINT's class with its base_v2.yml settings (grouped-query attention, 2 key/value heads, depth in the
decoder, 6 cell-specific layers), converted to `ScPrintV2Model`; record scprint_speed[_SHAPE]_v2.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from grnformer.bench.toolkit import results_path, write_record
from grnformer.bundle.checkpoint import load_bundle
from grnformer.data.corpus import datasets
from grnformer.data.genes import GeneVocab
from grnformer.inference.loop import context_collator
from grnformer.inference.prepared import prepare_input

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = 2200


def _fixture_script():
    spec = importlib.util.spec_from_file_location("make_scprint_fixture", ROOT / "scripts" / "make_scprint_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.float().cpu(), want.float().cpu()
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=["small", "medium", "large"], default="medium")
    ap.add_argument("--cells", type=int, default=4, help="cells per forward pass (one batch)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--venv", type=Path, default=Path(__file__).resolve().parent / "out" / "scprint-venv")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--layout", choices=["v1", "v2"], default="v1")
    args = ap.parse_args()
    device = torch.device(args.device)
    fixture = _fixture_script()
    fixture.scprint_on_path(args.venv)
    d, n_layers, n_heads = fixture.SHAPES[args.shape]

    vocab = GeneVocab.default()
    genes, positions = vocab.ids.tolist(), (vocab.positions + 1).tolist()
    t0 = time.perf_counter()
    theirs = fixture.build_scprint(genes, positions, d, n_layers, n_heads, layers_cls=[], layout=args.layout)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / f"scprint_{args.shape}.ckpt"
        fixture.save_lightning(theirs, ckpt)
        size_mb = ckpt.stat().st_size / 2**20
        t1 = time.perf_counter()
        bundle = load_bundle(ckpt)
        convert_s = time.perf_counter() - t1
    build_s = t1 - t0
    ours = bundle.model.to(device).eval()
    theirs = theirs.to(device).eval()
    for module in theirs.modules():  # base_v2's gradient checkpointing: training only, and refused on CPU attention
        if hasattr(module, "checkpointing"):
            module.checkpointing = False
    assert list(bundle.vocab.ids) == genes  # every gene converted, in the same order: token ids coincide

    adata = datasets.load("pbmc3k")
    prep = prepare_input(bundle, adata)
    rows = np.random.default_rng(0).choice(prep.n_cells, args.cells, replace=False)
    batch = context_collator(bundle, "most-expressed", context_length=CONTEXT)(prep.records(rows))
    g, c, depth = (batch[k].to(device) for k in ("genes", "counts", "depth"))
    scale = c.sum(-1)
    layers = list(range(len(theirs.transformer.blocks)))  # v2 counts the gene transformer's unused cross blocks

    work = {
        "forward": (lambda: theirs(g, c, req_depth=depth, depth_mult=scale),
                    lambda: ours(g, c, depth, scale=scale)),
        "embed_classify": (lambda: theirs(g, c, req_depth=depth, depth_mult=scale, do_class=True),
                           lambda: ours(g, c, depth, scale=scale)),
        "qk": (lambda: theirs(g, c, req_depth=depth, depth_mult=scale, do_class=True, get_attention_layer=layers),
               lambda: ours(g, c, depth, scale=scale, return_qk=True)),
    }
    with torch.inference_mode():
        (out_t, qkv), out_o = work["qk"][0](), work["qk"][1]()
        s = 0 if theirs.cell_transformer is not None else theirs.cell_embs_count  # v2: q/k of the genes only
        parity = {"cell_emb": _rel(out_o.cell_emb, out_t["cell_emb"]), "mean": _rel(out_o.mu, out_t["mean"]),
                  "theta": _rel(out_o.theta, out_t["disp"]), "pi_logit": _rel(out_o.pi_logit, out_t["zero_logits"]),
                  "q": max(_rel(q, t[:, s:, 0].transpose(1, 2)) for (q, _), t in zip(out_o.qk, qkv)),
                  "k": max(_rel(k, t[:, s:, 1].transpose(1, 2)) for (_, k), t in zip(out_o.qk, qkv))}
        for name in bundle.config.label_sizes:
            parity[f"logits_{name}"] = _rel(out_o.label_logits[name], out_t[f"cls_output_{name}_ontology_term_id"])
        print("parity (max |diff| / max |scPRINT|):", {k: f"{v:.1e}" for k, v in parity.items()}, flush=True)
        timings = {}
        for name, (run_theirs, run_ours) in work.items():
            times = {"scprint": [], "grnformer": []}
            for _ in range(args.repeats):
                for who, fn in (("scprint", run_theirs), ("grnformer", run_ours)):
                    _sync(device)
                    t = time.perf_counter()
                    fn()
                    _sync(device)
                    times[who].append(time.perf_counter() - t)
            med = {who: statistics.median(v) for who, v in times.items()}
            timings[name] = {"seconds_per_batch": med, "runs": times,
                             "cells_per_s": {who: args.cells / v for who, v in med.items()}}
            if device.type == "cpu":
                timings[name]["speedup"] = med["scprint"] / med["grnformer"]
            print(name, {k: round(v, 3) for k, v in med.items()},
                  f"speed-up {timings[name].get('speedup', float('nan')):.2f}x", flush=True)

    body = {"shape": {"name": args.shape, "d_model": d, "n_layers": n_layers, "n_heads": n_heads,
                      "n_genes": len(genes), "context": CONTEXT},
            "layout": args.layout, "converted_to": type(ours).__name__,
            "device": str(device), "cells_per_batch": args.cells, "repeats": args.repeats,
            "checkpoint_mb": round(size_mb, 1), "build_and_save_s": round(build_s, 1), "convert_s": round(convert_s, 1),
            "parity_max_relative_difference": parity, "timings": timings,
            "scprint_versions": {"scprint": "2.3.8", "simpler_flash": "1.0.7",
                                 "attention": "simpler-flash 'normal' (flash_attn is not installed on CPU)"}}
    name = "scprint_speed" if args.shape == "medium" else f"scprint_speed_{args.shape}"
    if device.type != "cpu":
        name += f"_{device.type}"
    if args.layout == "v2":
        name += "_v2"
    compare = f"grnformer {type(ours).__name__} vs scPrint class"
    path = write_record(results_path(name), body, method={"compare": compare,
                                                          "workloads": list(work)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
