"""The network protocol's whole table and its rule (protocol version 2, issue 28): every grn setting × every pair of
`grnformer.bench.protocol`, with bootstrap intervals, paired differences from GENIE3 and Pearson, wall time per
method, and the defaults the rule chooses from the development rows.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_protocol.py [--split all] [--sizes 500 1000] \
        [--datasets NAME ...] [--checkpoint shipped] [--out benchmarks/results/protocol.json]

Methods: GENIE3 (random forests, `--trees` trees of at most `--tree-cells` cells each; no grn method, the
reference), and the grn settings, pure and fused in one grid: mean_qk (the attention read-out), pearson, spearman,
embedding (through `grn`, so on the same genes and cells as a user's run), boosted (`networks.boosted_trees`, the
booster `grn --method boosted` runs, fitted here on the pair's regulators as GENIE3 is), and every fusion of one or
two of them at `GRID_STEP` (`networks.from_data.fuse_ranks`, what `grn --method fused` runs). The rule
(`protocol.choose_default`) reads the development rows only and writes the default method and fusion weights to
the record; tests/test_protocol.py ties networks/grn_options.py's DEFAULT_METHOD and DEFAULT_FUSION to it. An
evaluation-only run scores the choice of the development record (`--development-record`).

The record (`bench.toolkit.write_record`) carries the protocol version, checkpoint digest, the resolved precision
and hashes of every dataset, truth, gene list and of the code that made the networks. Networks are cached under
benchmarks/out/protocol_cache keyed by all of those, so new code, weights, precision or a new protocol never reuse
old ones.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from grnformer.bench import protocol, toolkit
from grnformer.bench.baselines import infer, method_version
from grnformer.bench.truths import load_truth, perturbation
from grnformer.bundle.checkpoint import resolve_checkpoint
from grnformer.data.corpus import datasets
from grnformer.data.genes import tf_symbols
from grnformer.edge_metrics import rank_metrics
from grnformer.errors import ResourceError
from grnformer.inference.device import load_task_bundle, uses_bf16
from grnformer.inference.gene_sets import select_genes
from grnformer.inference.prepared import prepare_input
from grnformer.networks.from_data import fuse_ranks
from grnformer.networks.grn import GRNOptions, grn
from grnformer.networks.network_adata import network_names

# Fusion component → the grn method that makes it alone. 'denoised' (a denoising pass over every cell, more than all
# others together) is left out of version 2's grid; version 1 measured it below Pearson (HISTORY.md).
COMPONENTS = {"attention": "mean_qk", "pearson": "pearson", "spearman": "spearman", "embedding": "embedding",
              "boosted": "boosted"}
GRN_COMPONENTS = ("attention", "pearson", "spearman", "embedding")  # made by grn; boosted by the baseline
GRID_STEP = 0.1
CACHE = Path("benchmarks/out/protocol_cache")
# What computes each kind of network: a change in any of these files is a new cache key and a new record hash.
GRN_CODE = ("grnformer.networks.grn", "grnformer.networks.methods", "grnformer.networks.dispatch",
            "grnformer.networks.network_plan", "grnformer.networks.network_context", "grnformer.networks.attention",
            "grnformer.networks.from_data", "grnformer.networks.grn_options", "grnformer.inference.loop",
            "grnformer.model.grnformer")
BASELINE_CODE = ("grnformer.bench.baselines", "grnformer.networks.from_data", "grnformer.networks.boosted_trees")
SCORE_CODE = ("grnformer.bench.protocol", "grnformer.edge_metrics")


def candidates() -> list[dict[str, float]]:
    """Every grn setting of the grid: each component alone, and each two at GRID_STEP."""
    out = [{c: 1.0} for c in COMPONENTS]
    ticks = np.round(np.arange(GRID_STEP, 1 - 1e-9, GRID_STEP), 6)
    for a, b in itertools.combinations(COMPONENTS, 2):
        out += [{a: float(w), b: float(round(1 - w, 6))} for w in ticks]
    return out


def setting(weights: dict[str, float]) -> str:
    """A candidate's name: the grn method for one component, else fusion weights as `grn --fusion-weights` takes
    them (in `COMPONENTS` order)."""
    used = [c for c in COMPONENTS if weights.get(c, 0) > 0]
    if len(used) == 1:
        return COMPONENTS[used[0]]
    return ",".join(f"{c}:{weights[c]:g}" for c in used)


def parse_setting(name: str) -> dict[str, float]:
    if ":" not in name:
        return {next(c for c, m in COMPONENTS.items() if m == name): 1.0}
    return {c: float(w) for c, w in (item.split(":") for item in name.split(","))}


def load_data(name: str, size: int):
    if name == protocol.PAPALEXI:
        control, screen = protocol.load_papalexi()
        return control, perturbation(screen, "perturbation", "control")
    if name in protocol.BEELINE_SETS:
        return protocol.load_beeline(name, size), None
    return datasets.load(name), None


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _cached(parts: list[str], path_stem: str, compute) -> tuple[np.ndarray, float]:
    key = hashlib.sha1("|".join([protocol.VERSION, *parts]).encode()).hexdigest()[:16]
    path = CACHE / f"{path_stem}_{key}.npz"
    if path.is_file():
        found = np.load(path)
        return found["net"], float(found["seconds"])
    net, seconds = _timed(compute)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, net=net, seconds=seconds)
    return net, seconds


def run_component(bundle, adata, genes: list[str], method: str, name: str, args) -> tuple[np.ndarray, float]:
    """One grn method's network over every row, cached by protocol version, code version, checkpoint digest,
    precision, data, genes and method."""
    def compute():
        net = grn(bundle, adata, GRNOptions(genes=genes, method=method, regulators="all"), progress=False)
        assert net.var_names.tolist() == genes
        return np.asarray(net.varp["GRN"], dtype=np.float32)

    return _cached([args.code["grn"], args.digest, args.precision, name, str(adata.n_obs), method, *genes],
                   f"{name}_{method}", compute)


def run_baseline(method: str, adata, name: str, genes: list[str], features: np.ndarray, kw: dict
              ) -> tuple[np.ndarray, float]:
    """A baseline's network, square over ``genes`` (rows = ``features``, the regulators it may use), cached by
    protocol version, code version, method, its version and options, data, genes and regulators."""
    def compute():
        net = infer(method, adata, genes=genes, regulators=list(features), **kw)
        out = np.zeros((len(genes), len(genes)), dtype=np.float32)
        idx = np.asarray([genes.index(g) for g in features])
        out[idx] = protocol.dense_rows(net, net.var_names.to_numpy(), features)
        return out

    return _cached([code_version(BASELINE_CODE), method, method_version(method), json.dumps(kw, sort_keys=True),
                    name, str(adata.n_obs), *genes, "|", *features], f"{name}_{method}", compute)


def code_version(modules: tuple[str, ...]) -> str:
    return protocol.code_version(*modules)


def pair_truth(pair: protocol.Pair, size: int, screen_truth=None):
    """A pair's truth: the screen's own (perturbation), the BEELINE folder's, or a named truth (ResourceError when
    the shared copy lacks it)."""
    if pair.truth == "perturbation":
        return screen_truth
    if pair.dataset in protocol.BEELINE_SETS:
        return protocol.beeline_truth(pair.dataset, pair.truth, size)
    return load_truth(pair.truth)


def pair_regulators(pair: protocol.Pair, size: int, truth, names: np.ndarray, organism: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(the scored regulator rows among ``names``, the regulators every method may use): the pair's universe,
    and on BEELINE pairs also the gene set's TFs as features."""
    allowed = tf_symbols(organism) if pair.universe == "tf" else set(truth.regulators)
    regs = names[np.isin(names, list(allowed))]
    if pair.universe != protocol.BEELINE_UNIVERSE:
        return regs, regs
    return regs, names[np.isin(names, list(protocol.beeline_tfs(pair.dataset, size) | set(regs)))]


def run_dataset(bundle, name: str, size: int, pairs, args) -> list[dict]:
    """Every candidate on the dataset's pairs at one gene-set size: development pairs get each candidate's point
    estimate (the rule reads those) and bootstraps of the pure methods; evaluation pairs bootstraps of the pure
    methods and of the chosen settings."""
    adata, screen_truth = load_data(name, size)
    prep = prepare_input(bundle, adata)
    given_genes = name == protocol.PAPALEXI or name in protocol.BEELINE_SETS
    cols = np.arange(prep.adata.n_vars) if given_genes else select_genes(prep, "hvg+tfs", size)
    genes = network_names(prep, cols).tolist()
    names = np.asarray(genes)
    # BEELINE sets: baselines read the values as given (X, log2), grnformer the rebuilt pseudo-counts (prep)
    base_data = adata if name in protocol.BEELINE_SETS else prep.adata
    args.hashes["data"][f"{name}@{size}"] = data_hash(adata)
    args.hashes["genes"][f"{name}@{size}"] = protocol.content_hash(names.astype(object))
    print(f"{name}: {adata.n_obs} cells, {len(genes)} genes (TFs + {size})", flush=True)
    comp, seconds = {}, {}
    for c in GRN_COMPONENTS:
        comp[c], seconds[c] = run_component(bundle, adata, genes, COMPONENTS[c], name, args)
        print(f"  {c}: {seconds[c]:.1f} s", flush=True)
    rows_out = []
    for pair in pairs:
        try:
            truth = pair_truth(pair, size, screen_truth)
        except ResourceError as err:  # recorded, never silent: the table says which pair could not be scored
            print(f"  {pair.name}: truth missing, skipped ({err})", flush=True)
            rows_out.append({"dataset": name, "truth": pair.truth, "split": pair.split, "tfs_plus": size,
                             "method": None, "skipped": str(err)})
            continue
        regs, features = pair_regulators(pair, size, truth, names, prep.organism)
        if len(regs) == 0:
            print(f"  {pair.name}: no regulator among the genes, skipped", flush=True)
            continue
        args.hashes["truths"][f"{name}×{pair.truth}@{size}"] = truth_hash(truth)
        t = truth.to_matrix(regs, names)
        valid = regs[:, None] != names[None, :]
        mask = np.isin(names, regs)
        parts, times = dict(comp), {c: seconds[c] for c in GRN_COMPONENTS}
        trees = {}
        for m, kw in (("genie3", {"n_estimators": args.trees, "max_samples": args.tree_cells}), ("boosted", {})):
            trees[m], times[m] = run_baseline(m, base_data, name, genes, features, kw)
        parts["boosted"] = trees["boosted"]
        scores = {COMPONENTS[c]: parts[c][mask] for c in COMPONENTS}
        scores["genie3"] = trees["genie3"][mask]
        point = {}
        is_dev = pair.split == protocol.DEVELOPMENT
        for w in candidates() if is_dev else [parse_setting(s) for s in args.chosen_settings]:
            key = setting(w)
            if key in scores and not (len(w) > 1):
                continue
            fused = fuse_ranks(parts, w, mask)[mask]
            if is_dev and key not in args.chosen_settings:
                r = rank_metrics(fused[valid], t[valid])
                point[key] = {"ratio": r["auprc"] / r["random_precision"], "epr": r["epr"]}
            else:
                scores[key] = fused
            times[key] = sum(times[c] for c in w)
        for c in COMPONENTS:
            times[COMPONENTS[c]] = times.pop(c)
        res = {**point, **protocol.bootstrap(scores, t, valid, n_boot=args.n_boot, seed=args.seed)}
        n_true = int(t[valid].sum())
        print(f"  {pair.name} [{pair.split}]: {len(regs)} regulators, {n_true} true edges; "
              + ", ".join(f"{m} {res[m]['ratio']:.2f}" for m in ("genie3", "boosted", "spearman", "mean_qk")),
              flush=True)
        for m, r in res.items():
            rows_out.append({"dataset": name, "truth": pair.truth, "universe": pair.universe, "split": pair.split,
                             "genes": len(genes), "tfs_plus": size, "cells": int(adata.n_obs),
                             "regulators": int(len(regs)), "regulators_used": int(len(features)),
                             "true_edges": n_true, "method": m, "seconds": times[m], **r})
    return rows_out


def costs(rows: list[dict]) -> tuple[dict[str, float], float]:
    """Each setting's time and GENIE3's at the largest gene set run (TFs+1000 in a full run) on the development
    datasets: the median over datasets of each dataset's largest time (one fit per dataset; its pairs share it)."""
    by: dict[str, dict[str, float]] = {}
    size = max(r["tfs_plus"] for r in rows if r.get("split") == protocol.DEVELOPMENT and r.get("method"))
    for r in rows:
        if r.get("split") == protocol.DEVELOPMENT and r.get("method") and r["tfs_plus"] == size:
            d = by.setdefault(r["method"], {})
            d[r["dataset"]] = max(d.get(r["dataset"], 0.0), r["seconds"])
    cost = {m: float(np.median(list(d.values()))) for m, d in by.items()}
    return cost, cost.get("genie3", np.inf)


def choose(rows: list[dict]) -> dict:
    """The rule on the development rows: the default setting, the best fusion (what `--method fused` uses),
    their aggregates, the ranking, and the same rule with each development dataset left out."""
    figures = protocol.pair_figures(rows, protocol.DEVELOPMENT)
    scores = protocol.aggregate(figures)
    robust = protocol.robust_scores(figures)
    cost, genie3 = costs(rows)
    grid = {m: v for m, v in robust.items() if m != "genie3"}
    chosen = protocol.choose_default(grid, cost, genie3)
    # `--method fused` is the model's attention with the data's (every fused run pays the attention pass): its
    # weights come from the fusions attention takes part in
    fusions = {m: v for m, v in grid.items() if ":" in m and "attention" in m}
    try:
        fusion = protocol.choose_default(fusions, cost, genie3)
    except ValueError:  # no fusion is fast enough: `--method fused` is the user's choice, so the best one
        fusion = max(fusions, key=fusions.get)
    method = "fused" if ":" in chosen else chosen
    return {"default": {"method": method, "fusion_weights": chosen if method == "fused" else fusion},
            "default_setting": chosen, "development_aggregate": dict(list(scores.items())[:15]),
            "development_robust": dict(list(robust.items())[:15]),
            "genie3_aggregate": scores.get("genie3"), "cost_s_tfs1000": {m: cost.get(m) for m in
                                                                        [*list(robust)[:15], "genie3"]},
            "genie3_cost_s_tfs1000": genie3,
            "leave_one_out": protocol.leave_one_out(figures, cost, genie3, chosen, set(grid))}


def _cell(r: dict) -> str:
    lo, hi = r.get("ratio_ci", [None, None])
    return f"{r['ratio']:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None else "")


def _diff(r: dict, ref: str) -> str:
    if f"minus_{ref}" not in r:
        return "—"
    lo, hi = r[f"minus_{ref}_ci"]
    if lo is None:
        return f"{r[f'minus_{ref}']:+.2f}"
    mark = " ↑" if lo > 0 else " ↓" if hi < 0 else ""
    return f"{r[f'minus_{ref}']:+.2f} [{lo:+.2f}, {hi:+.2f}]{mark}"


def table(record: dict, split: str, methods: tuple[str, ...] | None = None) -> str:
    """Markdown: one row per pair, gene set and method of ``split`` (grid points left out; pairs below the
    regulator floor marked †), AUPRC ratio with its interval, paired differences from GENIE3 and Pearson, time."""
    lines = ["| pair | genes | regulators | method | AUPRC ratio [95%] | − GENIE3 [95%] | − Pearson [95%] | s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        if r["split"] != split or "ratio_ci" not in r or (methods and r["method"] not in methods):
            continue
        floor = " †" if r["regulators"] < record["regulator_floor"] else ""
        lines.append(f"| {r['dataset']} × {r['truth']} | {r['genes']} | {r['regulators']}{floor} | {r['method']} | "
                     f"{_cell(r)} | {_diff(r, 'genie3')} | {_diff(r, 'pearson')} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def figures_table(record: dict, split: str, methods: tuple[str, ...]) -> str:
    """Markdown: one figure per dataset × truth (mean over gene-set sizes) per method; † below the floor."""
    figs = protocol.pair_figures(record_rows(record), split, record["regulator_floor"])
    pairs = sorted({(f["dataset"], f["truth"]) for f in figs})
    at = {(f["dataset"], f["truth"], f["method"]): f for f in figs}
    lines = ["| dataset × truth | regulators | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for d, t in pairs:
        some = next(f for f in figs if (f["dataset"], f["truth"]) == (d, t))
        cells = [f"{at[(d, t, m)]['ratio']:.2f}" if (d, t, m) in at else "—" for m in methods]
        lines.append(f"| {d} × {t} | {some['regulators']}{' †' if some['below_floor'] else ''} | "
                     + " | ".join(cells) + " |")
    agg = protocol.aggregate(figs)
    lines.append("| **median (above floor)** | | " + " | ".join(f"**{agg[m]:.2f}**" if m in agg else "—"
                                                          for m in methods) + " |")
    return "\n".join(lines)


def _grid_rows(record: dict) -> list[dict]:
    """The record's compact grid as rows again, each fusion's time the sum of its components' on the same pair
    (how the run timed it), so `choose` on a record's rows repeats the run's choice."""
    took = {(r["dataset"], r["truth"], r["tfs_plus"], r["method"]): r["seconds"] for r in record["rows"]
            if r.get("method")}
    return [{"dataset": d, "truth": t, "tfs_plus": s, "method": m, "ratio": ratio, "epr": epr, "split": split,
             "regulators": n, "seconds": sum(took[(d, t, s, COMPONENTS[c])] for c in parse_setting(m))}
            for d, t, s, m, ratio, epr, split, n in record.get("fusion_grid", [])]


def record_rows(record: dict) -> list[dict]:
    """Every scored row of a record, the grid's included (what `choose` reads)."""
    return [r for r in record["rows"] if r.get("method")] + _grid_rows(record)


def run_arguments(doc: str, record: str, trees: bool = True) -> argparse.ArgumentParser:
    """The options every network benchmark built on the protocol shares: gene-set sizes, checkpoint, the
    protocol's GENIE3 (``trees``), bootstrap and the record's path (benchmarks/results/``record``.json)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(protocol.GENE_SET_SIZES))
    ap.add_argument("--checkpoint", default="shipped")
    if trees:
        ap.add_argument("--trees", type=int, default=50)
        ap.add_argument("--tree-cells", type=int, default=500)
    ap.add_argument("--n-boot", type=int, default=toolkit.N_BOOT)
    ap.add_argument("--seed", type=int, default=toolkit.SEED, help="the bootstrap's resamples")
    ap.add_argument("--out", default=str(toolkit.results_path(record)))
    return ap


def main(argv: list[str] | None = None) -> None:
    ap = run_arguments(__doc__, "protocol")
    ap.add_argument("--split", choices=["development", "evaluation", "all"], default="all")
    ap.add_argument("--datasets", nargs="*", help="only these datasets (default: every dataset of the split)")
    ap.add_argument("--development-record", default=str(toolkit.results_path("protocol")),
                    help="with --split evaluation: the record whose development choice is evaluated")
    ap.add_argument("--table", metavar="JSON", help="print the markdown tables of a finished run and stop")
    ap.add_argument("--rechoose", metavar="JSON", help="apply the rule in code to a finished run's rows and write the "
                    "record again to --out (the run's own date, machine and command kept under 'run')")
    args = ap.parse_args(argv)
    if args.rechoose:
        rechoose(Path(args.rechoose), args.out, argv)
        return
    if args.table:
        record = json.loads(Path(args.table).read_text())
        shown = ("genie3", "boosted", "pearson", "spearman", "mean_qk", "embedding")
        for split in (protocol.DEVELOPMENT, protocol.EVALUATION):
            print(f"\n{split}:\n" + figures_table(record, split, (*shown, record["default_setting"])))
            print(table(record, split))
        return
    bundle = load_model(args)
    args.chosen_settings = []
    rows: list[dict] = []
    splits = [protocol.DEVELOPMENT, protocol.EVALUATION] if args.split == "all" else [args.split]
    t0 = time.perf_counter()
    choice = None
    if splits == [protocol.EVALUATION]:  # no development rows here: the choice is the development record's
        development = json.loads(Path(args.development_record).read_text())
        choice = {k: development[k] for k in ("default", "default_setting", "development_aggregate",
                                              "leave_one_out") if k in development}
    for split in splits:  # development first: its choice is fixed before any evaluation pair is scored
        if split == protocol.EVALUATION:
            choice = choice or choose(rows)
            args.chosen_settings = list(dict.fromkeys([choice["default_setting"],
                                                       choice["default"]["fusion_weights"]]))
        chosen_pairs = [p for p in protocol.pairs(split) if not args.datasets or p.dataset in args.datasets]
        for name in dict.fromkeys(p.dataset for p in chosen_pairs):
            for size in args.sizes if name != protocol.PAPALEXI else args.sizes[:1]:
                rows += run_dataset(bundle, name, size, [p for p in chosen_pairs if p.dataset == name], args)
                _write(args, rows, choice, time.perf_counter() - t0, argv)  # a partial table survives a crash
    if choice is None and rows:
        choice = choose(rows)
    _write(args, rows, choice, time.perf_counter() - t0, argv)
    print(f"wrote {args.out}; default {choice['default'] if choice else None}", flush=True)


def load_model(args):
    """The checkpoint's bundle; on ``args`` its digest, the resolved precision, the code versions and empty hash
    tables (what cache keys and the record carry)."""
    path = resolve_checkpoint(args.checkpoint)
    bundle, _ = load_task_bundle(path)
    args.digest = protocol.checkpoint_digest(path)
    args.precision = "bf16" if uses_bf16(torch.device("cpu")) else "fp32"
    args.code = {"grn": code_version(GRN_CODE), "baselines": code_version(BASELINE_CODE),
                 "scoring": code_version(SCORE_CODE)}
    args.hashes = {"data": {}, "truths": {}, "genes": {}, "code": args.code}
    return bundle


def data_hash(adata) -> str:
    """`protocol.content_hash` of a dataset's values, cell names and gene names."""
    x = adata.X
    return protocol.content_hash(
        *(np.asarray(a) for a in (x.data, x.indices, x.indptr)) if hasattr(x, "indptr") else (np.asarray(x),),
        adata.obs_names.to_numpy(dtype=object), adata.var_names.to_numpy(dtype=object))


def truth_hash(truth) -> str:
    """`protocol.content_hash` of a truth's edges, sorted."""
    return protocol.content_hash(np.sort((truth.edges["regulator"] + ">" + truth.edges["target"]).to_numpy(
        dtype=object)))


def rechoose(path: Path, out: str, argv: list[str] | None) -> None:
    """The rule in code applied again to a record's rows (no network recomputed), written through write_record."""
    record = json.loads(path.read_text())
    head = ("date", "machine", "command", "protocol_version", "method_version", "checkpoint", "checkpoint_digest")
    body = {k: v for k, v in record.items() if k not in head}
    body["run"] = record.get("run") or {k: record[k] for k in ("date", "machine", "command")}
    body.update(choose(record_rows(record)))
    body["hashes"]["code"]["scoring"] = code_version(SCORE_CODE)
    toolkit.write_record(out, body, method=record["method_version"]["method"], checkpoint=record["checkpoint"],
                         digest=record["checkpoint_digest"], command=toolkit.command_line(argv), indent=None)
    print(f"wrote {out}; default {body['default']}", flush=True)


def split_grid(rows: list[dict]) -> tuple[list[dict], list[list]]:
    """(rows with intervals, the grid's point estimates as [dataset, truth, tfs_plus, setting, ratio, epr, split,
    regulators]) — the grid is thousands of points, kept compact so the record stays small enough to commit."""
    grid = [r for r in rows if r.get("method") and "ratio_ci" not in r and "skipped" not in r]
    return ([r for r in rows if r not in grid],
            [[r["dataset"], r["truth"], r["tfs_plus"], r["method"], round(r["ratio"], 4), round(r["epr"], 4),
              r["split"], r["regulators"]] for r in grid])


def _write(args, rows: list[dict], choice: dict | None, wall: float, argv: list[str] | None) -> None:
    """The record, through the toolkit's writer (atomic; provenance and checkpoint digest included)."""
    scored, grid = split_grid(rows)
    methods = {m: method_version(m) for m in ("genie3", "boosted")}
    methods.update({m: f"grn method {m}" for m in ("mean_qk", "pearson", "spearman", "embedding")})
    body = {"network_protocol": protocol.VERSION, "regulator_floor": protocol.REGULATOR_FLOOR, "tie": protocol.TIE,
            "speed": protocol.SPEED, "precision": getattr(args, "precision", None),
            "settings": {"trees": args.trees, "tree_cells": args.tree_cells, "n_boot": args.n_boot,
                         "sizes": args.sizes, "datasets": args.datasets, "grid_step": GRID_STEP,
                         "components": COMPONENTS},
            **(choice or {}), "hashes": getattr(args, "hashes", None), "wall_s": wall, "rows": scored,
            "fusion_grid": grid}
    toolkit.write_record(args.out, body, method=methods, checkpoint=args.checkpoint, digest=args.digest,
                         command=toolkit.command_line(argv), indent=None)


if __name__ == "__main__":
    main()
