"""Options of the tasks, as dataclasses whose fields are documented once and become the CLI's flags.

Light on purpose (standard library only at import): the CLI builds its parser from these classes and
`grnformer --help` must stay instant; validation imports what it needs when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

PRECISIONS = ("auto", "fp32", "bf16")
GENE_SETS = ("hvg", "most_expressed", "random_expressed")
DEFAULT_BATCH_SIZE = 32
DEFAULT_N_GENES = 2000


def option(default: Any, help: str, choices: Sequence[str] | None = None, kind: str | None = None,
           cli: bool = True) -> Any:
    """A documented option field: ``help`` is its only documentation (the CLI flag's help is built from it).

    kind: how the CLI parses it when the default does not say: 'int', 'float', 'str', 'flag', 'list'
    (comma-separated)."""
    kind = kind or {bool: "flag", int: "int", float: "float"}.get(type(default), "str")
    return field(default=default, metadata={"help": help, "choices": choices, "kind": kind, "cli": cli})


@dataclass
class DenoiseOptions:
    """What a denoising run can be asked for; each field is documented once, here (the CLI's flags too)."""

    depth_multiplier: float = option(1.0, "the depth the model is told, as a multiple of each cell's measured "
                                     "depth (values are expected counts at that depth)")
    genes: Sequence[str] | str | None = option(
        None, "output genes: 'all' (default: each cell's expressed genes, zeros stay zero), 'hvg' (the n_genes "
        "most variable genes, imputed where unexpressed), or gene names (CLI: a comma-separated list or a file)")
    n_genes: int = option(DEFAULT_N_GENES, "with genes 'hvg': how many")
    max_listed_per_context: int | None = option(
        None, "output genes per context (default: the context length for 'all', half of it for a gene set); the "
        "rest of the context holds other expressed genes of the cell as anchors", kind="int")
    batch_size: int = option(DEFAULT_BATCH_SIZE, "cells per forward pass (each runs one context per part of its "
                             "output genes)")
    precision: str = option("auto", "auto: bf16 on GPUs that support it, fp32 elsewhere", choices=PRECISIONS)
    organism: str | None = option(None, "human or mouse, when obs has no organism_ontology_term_id")
    seed: int = option(0, "the random anchor genes of each context")
