"""The option field helper every command's options use, and the values and help texts they share (written once).

Standard library only at import: the CLI builds its parser from the option dataclasses and `grnformer --help`
must stay instant; validation imports what it needs when it runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, Mapping, Sequence, TypeVar

from grnformer.errors import InputError

PRECISIONS = ("auto", "fp32", "bf16")
GENE_SETS = ("hvg", "hvg+tfs", "most_expressed", "random_expressed")
DEFAULT_BATCH_SIZE = 32
DEFAULT_N_GENES = 2000
MAX_MISSING_GENES = 0.5  # share of a given gene list that may be missing from the data before it is refused

# Help texts that several commands share, written once (tests/test_options_help.py checks that a field name keeps
# one text across the options classes and that every CLI flag has help).
ORGANISM_HELP = "human or mouse, when obs has no organism_ontology_term_id"
DEVICE_HELP = "cpu, cuda, cuda:1 … (default: cuda when available)"
PRECISION_HELP = ("auto: bf16 on GPUs that support it and on CPUs with native bf16 (AVX512-BF16 or AMX), fp32 "
                  "elsewhere and for knock-out effects (perturb); fp32 gives the same numbers on every machine")
BATCH_SIZE_HELP = "cells per forward pass"

Options = TypeVar("Options")


def option(default: Any, help: str, choices: Sequence[str] | None = None, kind: str | None = None,
           cli: bool = True) -> Any:
    """A documented option field: ``help`` is its only documentation (the CLI flag's help is built from it).

    kind: how the CLI parses it when the default does not say: 'int', 'float', 'str', 'flag', 'list'
    (comma-separated)."""
    kind = kind or {bool: "flag", int: "int", float: "float"}.get(type(default), "str")
    return field(default=default, metadata={"help": help, "choices": choices, "kind": kind, "cli": cli})


def options_from(cls: type[Options], options: Options | None = None,
                 keywords: Mapping[str, Any] | None = None) -> Options:
    """``options`` (an instance of ``cls``, or None for the defaults) with ``keywords`` replacing its fields: the
    one way every task and the model object take "an options object, keywords, or both" (keywords win).

    An unknown keyword or an options object of another class is an InputError naming the valid fields."""
    keywords = dict(keywords or {})
    if options is not None and not isinstance(options, cls):
        raise InputError(f"options must be a {cls.__name__}; got {type(options).__name__}.")
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(keywords) - set(names))
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)}; {cls.__name__} has {', '.join(names)}.")
    return dataclasses.replace(options if options is not None else cls(), **keywords)
