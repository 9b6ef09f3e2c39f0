"""Options of the cell tasks (denoise, adapt), as dataclasses whose fields are documented once and become the
CLI's flags. Standard library only at import (see `inference.options`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from grnformer.inference.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_N_GENES,
    PRECISIONS,
    option,
)


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


@dataclass
class AdaptOptions:
    """Options of a self-supervised adaptation (`train.adapt`); each field documented once, here."""

    steps: int = option(200, "optimiser steps (denoising + bottleneck on the user's cells; ~1.4 s each at "
                        "batch 16 on one CPU core with the shipped model)")
    lr: float = option(1e-4, "peak learning rate (AdamW; warm-up over a tenth of the steps, then cosine)")
    batch_size: int = option(16, "cells per step")
    max_cells: int | None = option(None, "adapt on at most this many cells, drawn at random (seed)", kind="int")
    seed: int = option(0, "random draws: cells, contexts, thinning, held-out tenth")
    organism: str | None = option(None, "human or mouse, when obs has no organism_ontology_term_id")
