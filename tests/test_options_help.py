"""Help written once: every CLI flag has help, an option field keeps one text across the options classes (unless a
command means something else by it, listed here with why), and the texts several commands share are written once
in the source."""

import argparse
import dataclasses
from collections import defaultdict
from pathlib import Path

import grnformer
from grnformer.bench.bench_options import BenchOptions
from grnformer.cli import CHECKPOINT_HELP, INPUT_HELP, build_parser
from grnformer.inference.option_fields import BATCH_SIZE_HELP, DEVICE_HELP, ORGANISM_HELP, PRECISION_HELP
from grnformer.networks.grn_options import (
    CORRECTION_HELP,
    DIRECTION_HELP,
    SELECT_HEADS_OPTIONS,
    DiffNetOptions,
    GRNOptions,
)
from grnformer.tasks.task_options import AdaptOptions, ClassifyOptions, DenoiseOptions, EmbedOptions

COMMAND_OPTIONS = {"embed": EmbedOptions, "classify": ClassifyOptions, "denoise": DenoiseOptions, "grn": GRNOptions,
                   "select-heads": GRNOptions, "diffnet": DiffNetOptions, "adapt": AdaptOptions,
                   "bench": BenchOptions}
# Names whose help differs on purpose: the commands mean different things by them.
INTENDED = {
    "batch_size": "denoise runs several contexts per cell; adapt's batches are optimiser steps",
    "seed": "each command says what its seed draws",
    "genes": "denoise's output genes, grn's network genes, diffnet's chosen over two groups",
    "n_genes": "how many genes of which set (denoise, grn, diffnet, bench, demo)",
    "max_cells": "per network, per group, for adapting, for the demo",
    "regulators": "grn's rows, diffnet's tested rows, bench's method rows, export's exported rows",
    "direction": "grn adds that a head selection sets it",
    "organism": "prepare's organism overrides its guess; the tasks' fills a missing obs column",
    "out": "each command's output directory holds other files",
    "checkpoint": "bench's is the grnformer method's, the demo's has a default",
    "groupby": "grn's takes a column, diffnet's a column and two groups",
    "top_k": "grn's filter keeps top_k targets; export's table keeps its own",
    "method": "select-heads chooses among the attention read-outs only",
}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("cli")}


def test_every_flag_and_positional_of_every_command_has_help():
    missing = [f"{name} {a.dest}" for name, sub in _subcommands().items() for a in sub._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not missing


def test_option_flags_carry_their_field_help_and_select_heads_takes_its_list():
    commands = _subcommands()
    for command, cls in COMMAND_OPTIONS.items():
        flags = {a.dest: a for a in commands[command]._actions if a.option_strings}
        fields = _fields(cls)
        if command == "select-heads":
            fields = {n: f for n, f in fields.items() if n in SELECT_HEADS_OPTIONS}
            assert set(SELECT_HEADS_OPTIONS) <= set(flags)
            assert not {"filter", "heads", "groupby", "keep_heads", "symmetrise"} & set(flags)
        for name, f in fields.items():
            if (command, name) != ("select-heads", "method"):  # its own: the attention read-outs only
                assert flags[name].help.startswith(f.metadata["help"]), (command, name)


def test_a_name_keeps_one_help_text_unless_intended():
    """Across the options classes' fields and the CLI's own flags (a field-built flag counts as its field)."""
    texts: dict[str, set[str]] = defaultdict(set)
    for cls in set(COMMAND_OPTIONS.values()):
        for name, f in _fields(cls).items():
            texts[name].add(f.metadata["help"])
    assert texts["organism"] == {ORGANISM_HELP}  # every task's option (prepare's own flag differs, below)
    for command, sub in _subcommands().items():
        fields = _fields(COMMAND_OPTIONS[command]) if command in COMMAND_OPTIONS else {}
        for a in sub._actions:
            if a.option_strings and not isinstance(a, argparse._HelpAction):
                field_help = fields[a.dest].metadata["help"] if a.dest in fields else None
                built = field_help is not None and a.help.startswith(field_help)  # field help + its default
                texts[a.dest].add(field_help if built else a.help)
    differ = {name for name, t in texts.items() if len(t) > 1}
    assert differ == set(INTENDED), (differ - set(INTENDED), set(INTENDED) - differ)
    assert texts["device"] == {DEVICE_HELP} and texts["precision"] == {PRECISION_HELP}
    assert texts["correction"] == {CORRECTION_HELP}


def test_shared_help_texts_are_written_once_in_the_source():
    source = "".join(p.read_text() for p in sorted(Path(grnformer.__file__).parent.rglob("*.py")))
    for text in (ORGANISM_HELP, DEVICE_HELP, PRECISION_HELP, BATCH_SIZE_HELP, DIRECTION_HELP, CORRECTION_HELP,
                 CHECKPOINT_HELP, INPUT_HELP):
        assert source.count(text[:40]) == 1, text
