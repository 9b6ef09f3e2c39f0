"""The option field helper every command's options use, and the values and help texts they share (written once).

Standard library only at import: the CLI builds its parser from the option dataclasses and `grnformer --help`
must stay instant; validation imports what it needs when it runs.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Sequence

PRECISIONS = ("auto", "fp32", "bf16")
GENE_SETS = ("hvg", "hvg+tfs", "most_expressed", "random_expressed")
DEFAULT_BATCH_SIZE = 32
DEFAULT_N_GENES = 2000
MAX_MISSING_GENES = 0.5  # share of a given gene list that may be missing from the data before it is refused


def option(default: Any, help: str, choices: Sequence[str] | None = None, kind: str | None = None,
           cli: bool = True) -> Any:
    """A documented option field: ``help`` is its only documentation (the CLI flag's help is built from it).

    kind: how the CLI parses it when the default does not say: 'int', 'float', 'str', 'flag', 'list'
    (comma-separated)."""
    kind = kind or {bool: "flag", int: "int", float: "float"}.get(type(default), "str")
    return field(default=default, metadata={"help": help, "choices": choices, "kind": kind, "cli": cli})
