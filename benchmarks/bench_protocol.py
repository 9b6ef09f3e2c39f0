"""The network protocol's whole table (issue 18): every method × every pair of `grnformer.bench.protocol`, with
bootstrap intervals, paired differences from GENIE3 and Pearson, and wall time per method.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_protocol.py [--split all] [--sizes 500 1000] \
        [--checkpoint shipped] [--out benchmarks/results/protocol.json]

Methods: GENIE3 (random forests, `--trees` trees of at most `--tree-cells` cells each), Pearson and Spearman
(`bench.baselines`), and grnformer's registered methods (`networks.methods`): mean_qk (the attention
read-out), embedding, denoised, pearson (the same |r| as the baseline, through grn), and fused, whose weights are
chosen here on the development pairs only (a grid over the simplex; the median AUPRC ratio over development
pairs and gene-set sizes decides) and then reported on the evaluation pairs. Every method gets the same genes,
cells and regulator rows (the pair's). Components are computed once per dataset and gene set; fused networks are
their rank fusion (`networks.from_data.fuse_ranks`, what `grn --method fused` runs).
The record (`bench.toolkit.write_record`) carries the protocol version and checkpoint digest; cached networks
under benchmarks/out/protocol_cache are keyed by both, so new weights or a new protocol never reuse old ones.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from pathlib import Path

import numpy as np

from grnformer.bench import protocol, toolkit
from grnformer.bench.baselines import infer, method_version
from grnformer.bench.truths import load_truth, perturbation
from grnformer.data.corpus import datasets
from grnformer.data.genes import tf_symbols
from grnformer.errors import ResourceError
from grnformer.inference.device import load_task_bundle
from grnformer.inference.gene_sets import select_genes
from grnformer.inference.prepared import prepare_input
from grnformer.metrics import rank_metrics
from grnformer.networks.from_data import fuse_ranks
from grnformer.networks.grn import GRNOptions, grn, network_names
from grnformer.networks.methods import METHODS
from grnformer.train.checkpoint import resolve_checkpoint

# 'denoised' is measured on its own (development pairs, TFs + 500: a denoising pass over every cell costs more
# than all other methods together) and is not a fusion component here.
COMPONENTS = ("attention", "pearson", "spearman", "embedding")
GRID_STEP = 0.1
CACHE = Path("benchmarks/out/protocol_cache")


def _grid() -> list[dict[str, float]]:
    ticks = np.arange(0, 1 + 1e-9, GRID_STEP)
    out = []
    for w in itertools.product(ticks, repeat=len(COMPONENTS)):
        if abs(sum(w) - 1) < 1e-9 and (w[0] > 0 or w[3] > 0):  # the model takes part
            out.append({c: float(v) for c, v in zip(COMPONENTS, w)})
    return out


def _key(weights: dict[str, float]) -> str:
    return "fused[" + ",".join(f"{c}:{w:g}" for c, w in weights.items() if w > 0) + "]"


def _data(name: str):
    if name == protocol.PAPALEXI:
        control, screen = protocol.load_papalexi()
        return control, perturbation(screen, "perturbation", "control")
    return datasets.load(name), None


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _component(bundle, adata, genes: list[str], method: str, name: str, digest: str) -> tuple[np.ndarray, float]:
    """One grnformer method's network over every row, cached under benchmarks/out/ by protocol version, checkpoint
    digest, data, genes and method (a rerun after a crash does not pay for the model again; new weights or a new
    protocol never reuse it)."""
    key = hashlib.sha1("|".join([protocol.PROTOCOL_VERSION, digest, name, str(adata.n_obs), method, *genes]
                                ).encode()).hexdigest()[:16]
    path = CACHE / f"{name}_{method}_{key}.npz"
    if path.is_file():
        found = np.load(path)
        return found["net"], float(found["seconds"])
    net, seconds = _timed(lambda: grn(bundle, adata, GRNOptions(genes=genes, method=method, regulators="all"),
                                      progress=False))
    assert net.var_names.tolist() == genes
    matrix = np.asarray(net.varp["GRN"], dtype=np.float64)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, net=matrix, seconds=seconds)
    return matrix, seconds


def _baseline(method: str, adata, name: str, genes: list[str], regs: np.ndarray, kw: dict
              ) -> tuple[np.ndarray, float]:
    """A baseline's regulator rows, cached by protocol version, method, its version and options, data, genes and
    regulators."""
    key = hashlib.sha1("|".join([protocol.PROTOCOL_VERSION, method, method_version(method),
                                 json.dumps(kw, sort_keys=True), name, str(adata.n_obs), *genes, "|", *regs]
                                ).encode()).hexdigest()[:16]
    path = CACHE / f"{name}_{method}_{key}.npz"
    if path.is_file():
        found = np.load(path)
        return found["net"], float(found["seconds"])
    net, seconds = _timed(lambda: infer(method, adata, genes=genes, regulators=list(regs), **kw))
    rows = protocol.dense_rows(net, net.var_names.to_numpy(), regs)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, net=rows, seconds=seconds)
    return rows, seconds


def run_dataset(bundle, name: str, size: int, pairs, args) -> list[dict]:
    adata, screen_truth = _data(name)
    prep = prepare_input(bundle, adata)
    cols = np.arange(prep.adata.n_vars) if name == protocol.PAPALEXI else select_genes(prep, "hvg+tfs", size)
    genes = network_names(prep, cols).tolist()
    print(f"{name}: {adata.n_obs} cells, {len(genes)} genes (TFs + {size})", flush=True)
    comp, seconds = {}, {}
    with_denoised = size in args.denoised_sizes and all(p.split == protocol.DEVELOPMENT for p in pairs)
    for method, component in (("mean_qk", "attention"), ("pearson", "pearson"), ("spearman", "spearman"),
                              ("embedding", "embedding"),
                              *([("denoised", "denoised")] if with_denoised else [])):
        comp[component], seconds[component] = _component(bundle, adata, genes, method, name, args.digest)
        print(f"  {component}: {seconds[component]:.1f} s", flush=True)
    names = np.asarray(genes)
    rows_out = []
    for pair in pairs:
        try:
            truth = screen_truth if pair.truth == "perturbation" else load_truth(pair.truth)
        except ResourceError as err:  # recorded, never silent: the table says which pair could not be scored
            print(f"  {pair.name}: truth missing, skipped ({err})", flush=True)
            rows_out.append({"dataset": name, "truth": pair.truth, "split": pair.split, "tfs_plus": size,
                             "method": None, "skipped": str(err)})
            continue
        allowed = tf_symbols(prep.organism) if pair.universe == "tf" else set(truth.regulators)
        regs = names[np.isin(names, list(allowed))]
        if len(regs) == 0:
            print(f"  {pair.name}: no regulator among the genes, skipped", flush=True)
            continue
        t = truth.to_matrix(regs, names)
        valid = regs[:, None] != names[None, :]
        mask = np.isin(names, regs)
        scores, times = {}, {}
        for m, kw in (("genie3", {"n_estimators": args.trees, "max_samples": args.tree_cells}),
                      ("pearson", {}), ("spearman", {})):
            scores[m], times[m] = _baseline(m, prep.adata, name, genes, regs, kw)
        for c, label in (("attention", "grnformer mean_qk"), ("embedding", "grnformer embedding"),
                         ("denoised", "grnformer denoised")):
            if c not in comp:
                continue
            scores[label] = comp[c][mask]
            times[label] = seconds[c]
        grid = {}  # development: point estimates of every grid point (the choice reads only those)
        for w in _grid() if pair.split == protocol.DEVELOPMENT else [args.chosen] if args.chosen else []:
            fused = fuse_ranks({c: comp[c] for c in COMPONENTS}, w, mask)[mask]
            if pair.split == protocol.DEVELOPMENT and w != args.chosen:
                r = rank_metrics(fused[valid], t[valid])
                grid[_key(w)] = {"ratio": r["auprc"] / r["random_precision"], "epr": r["epr"]}
            else:
                scores[_key(w)] = fused
            times[_key(w)] = sum(seconds[c] for c in COMPONENTS if w.get(c, 0) > 0)
        res = {**grid, **protocol.bootstrap(scores, t, valid, n_boot=args.n_boot, seed=args.seed)}
        n_true = int(t[valid].sum())
        print(f"  {pair.name} [{pair.split}]: {len(regs)} regulators, {n_true} true edges; "
              f"genie3 {res['genie3']['ratio']:.2f}, pearson {res['pearson']['ratio']:.2f}, "
              f"mean_qk {res['grnformer mean_qk']['ratio']:.2f}", flush=True)
        for m, r in res.items():
            rows_out.append({"dataset": name, "truth": pair.truth, "universe": pair.universe, "split": pair.split,
                             "genes": len(genes), "tfs_plus": size, "cells": int(adata.n_obs),
                             "regulators": int(len(regs)), "true_edges": n_true, "method": m,
                             "seconds": times[m], **r})
    return rows_out


def choose(rows: list[dict]) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """The fusion weights with the highest median AUPRC ratio over the development rows, and the ranking."""
    dev = [r for r in rows if r["split"] == protocol.DEVELOPMENT and (r["method"] or "").startswith("fused[")]
    medians = {}
    for m in {r["method"] for r in dev}:
        medians[m] = float(np.median([r["ratio"] for r in dev if r["method"] == m]))
    ranking = sorted(medians.items(), key=lambda kv: -kv[1])
    best = ranking[0][0]
    weights = {c: 0.0 for c in COMPONENTS}
    for item in best[len("fused["):-1].split(","):
        c, w = item.split(":")
        weights[c] = float(w)
    return weights, ranking


def _cell(r: dict) -> str:
    lo, hi = r.get("ratio_ci", [None, None])
    return f"{r['ratio']:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None else "")


def _diff(r: dict, ref: str) -> str:
    if f"minus_{ref}" not in r:
        return "—"
    lo, hi = r[f"minus_{ref}_ci"]
    mark = " ↑" if lo is not None and lo > 0 else " ↓" if hi is not None and hi < 0 else ""
    return f"{r[f'minus_{ref}']:+.2f} [{lo:+.2f}, {hi:+.2f}]{mark}"


def table(record: dict, split: str) -> str:
    """Markdown: one row per pair, gene set and method of ``split`` (grid points left out), AUPRC ratio with its
    interval, the paired differences from GENIE3 and Pearson, and wall time."""
    lines = ["| pair | genes | method | AUPRC ratio [95%] | − GENIE3 [95%] | − Pearson [95%] | s |",
             "|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        if r["split"] != split or "ratio_ci" not in r:
            continue
        lines.append(f"| {r['dataset']} × {r['truth']} | {r['genes']} | {r['method']} | {_cell(r)} | "
                     f"{_diff(r, 'genie3')} | {_diff(r, 'pearson')} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def medians(record: dict, split: str) -> dict[str, float]:
    """Median AUPRC ratio of each method over the split's pairs and gene sets."""
    by: dict[str, list[float]] = {}
    for r in record["rows"]:
        if r["split"] == split and np.isfinite(r.get("ratio", np.nan)):
            by.setdefault(r["method"], []).append(r["ratio"])
    return {m: float(np.median(v)) for m, v in sorted(by.items(), key=lambda kv: -np.median(kv[1]))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", choices=["development", "evaluation", "all"], default="all")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(protocol.GENE_SET_SIZES))
    ap.add_argument("--checkpoint", default="shipped")
    ap.add_argument("--trees", type=int, default=50)
    ap.add_argument("--tree-cells", type=int, default=500)
    ap.add_argument("--n-boot", type=int, default=toolkit.N_BOOT)
    ap.add_argument("--seed", type=int, default=toolkit.SEED, help="the bootstrap's resamples")
    ap.add_argument("--denoised-sizes", type=int, nargs="*", default=[500],
                    help="gene-set sizes at which the 'denoised' method is measured (development pairs only)")
    ap.add_argument("--out", default="benchmarks/results/protocol.json")
    ap.add_argument("--development-record", default=str(toolkit.results_path("protocol")),
                    help="with --split evaluation: the record whose development choice is evaluated")
    ap.add_argument("--table", metavar="JSON", help="print the markdown tables of a finished run and stop")
    args = ap.parse_args(argv)
    if args.table:
        record = json.loads(Path(args.table).read_text())
        for split in (protocol.DEVELOPMENT, protocol.EVALUATION):
            print(f"\n{split} medians:", json.dumps(medians(record, split), indent=0)[:2000])
            print(table(record, split))
        return
    path = resolve_checkpoint(args.checkpoint)
    bundle, _ = load_task_bundle(path)
    args.digest = protocol.checkpoint_digest(path)
    args.chosen = None
    rows: list[dict] = []
    splits = [protocol.DEVELOPMENT, protocol.EVALUATION] if args.split == "all" else [args.split]
    t0 = time.perf_counter()
    ranking = None
    if splits == [protocol.EVALUATION]:  # no development rows here: the choice is the development record's
        development = json.loads(Path(args.development_record).read_text())
        args.chosen, ranking = development["chosen_fusion_weights"], development["development_ranking"]
    for split in splits:  # development first: its choice is fixed before any evaluation pair is scored
        if split == protocol.EVALUATION and args.chosen is None:
            args.chosen, ranking = choose(rows) if rows else (None, None)
        chosen_pairs = protocol.pairs(split)
        for name in dict.fromkeys(p.dataset for p in chosen_pairs):
            for size in args.sizes if name != protocol.PAPALEXI else args.sizes[:1]:
                rows += run_dataset(bundle, name, size, [p for p in chosen_pairs if p.dataset == name], args)
                _write(args, rows, ranking, time.perf_counter() - t0, argv)  # a partial table survives a crash
    if args.chosen is None and rows:
        args.chosen, ranking = choose(rows)
    _write(args, rows, ranking, time.perf_counter() - t0, argv)
    print(f"wrote {args.out}; chosen weights {args.chosen}", flush=True)


def split_grid(rows: list[dict]) -> tuple[list[dict], list[list]]:
    """(rows with intervals, the fusion grid's point estimates as [dataset, truth, tfs_plus, method, ratio, epr])
    — the grid is thousands of points, kept compact so the record stays small enough to commit."""
    grid = [r for r in rows if (r.get("method") or "").startswith("fused[") and "ratio_ci" not in r]
    return ([r for r in rows if r not in grid],
            [[r["dataset"], r["truth"], r["tfs_plus"], r["method"], round(r["ratio"], 4), round(r["epr"], 4)]
             for r in grid])


def _write(args, rows: list[dict], ranking, wall: float, argv: list[str] | None) -> None:
    """The record, through the toolkit's writer (atomic; provenance and checkpoint digest included)."""
    rows, grid = split_grid(rows)
    methods = {"genie3": method_version("genie3"), "pearson": method_version("pearson"),
               "spearman": method_version("spearman"), **{f"grnformer {m}": f"registry {m}" for m in METHODS}}
    body = {"settings": {"trees": args.trees, "tree_cells": args.tree_cells, "n_boot": args.n_boot,
                         "sizes": args.sizes, "grid_step": GRID_STEP, "denoised_sizes": args.denoised_sizes},
            "chosen_fusion_weights": args.chosen, "development_ranking": ranking[:10] if ranking else None,
            "wall_s": wall, "rows": rows, "fusion_grid": grid}
    toolkit.write_record(args.out, body, method=methods, checkpoint=args.checkpoint, digest=args.digest,
                         command=toolkit.command_line(argv), indent=None)


if __name__ == "__main__":
    main()
