"""Options of the cell tasks (embed, classify, denoise, adapt), as dataclasses whose fields are documented once and
become the CLI's flags. Standard library only at import (see `inference.option_fields`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from grnformer.errors import InputError
from grnformer.inference.option_fields import (
    BATCH_SIZE_HELP,
    DEFAULT_BATCH_SIZE,
    DEFAULT_N_GENES,
    ORGANISM_HELP,
    PRECISION_HELP,
    PRECISIONS,
    option,
)

EMBED_SOURCES = ("cell", "cell_type", "mean")
DEFAULT_THRESHOLD = 0.5


@dataclass
class EmbedOptions:
    """What an embedding run can be asked for; each field is documented once, here (the CLI's flags too)."""

    source: str = option("cell", "cell: the cell token (the whole profile); cell_type: the token the cell-type "
                         "classifier reads (separates types more, batches less); mean: their mean",
                         choices=EMBED_SOURCES)
    umap: bool = option(False, "also a 2-D UMAP of the embeddings in obsm['X_umap']")
    batch_size: int = option(DEFAULT_BATCH_SIZE, BATCH_SIZE_HELP)
    precision: str = option("auto", PRECISION_HELP, choices=PRECISIONS)
    organism: str | None = option(None, ORGANISM_HELP)
    seed: int = option(0, "the random draw of each cell's context (reproducible embeddings) and the UMAP's layout")

    def validate(self) -> EmbedOptions:
        """Self, checked (InputError before the model loads)."""
        if self.source not in EMBED_SOURCES:
            raise InputError(f"source must be one of {', '.join(EMBED_SOURCES)}; got '{self.source}'.")
        return self


@dataclass
class ClassifyOptions:
    """What a label prediction can be asked for; each field is documented once, here (the CLI's flags too)."""

    classes: Sequence[str] | None = option(None, "label classes to predict (default: every class the model "
                                           "predicts; CLI: comma-separated)", kind="list")
    threshold: float = option(DEFAULT_THRESHOLD, "probability the top leaf needs to be named; below it the "
                              "prediction moves up to the most specific ancestor term holding that much (0: "
                              "always a leaf)")
    batch_size: int = option(DEFAULT_BATCH_SIZE, BATCH_SIZE_HELP)
    precision: str = option("auto", PRECISION_HELP, choices=PRECISIONS)
    organism: str | None = option(None, ORGANISM_HELP)
    seed: int = option(0, "the random draw of each cell's context (reproducible predictions)")

    def validate(self) -> ClassifyOptions:
        """Self, checked (InputError before the model loads)."""
        if not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"threshold must be in [0, 1]; got {self.threshold}.")
        return self


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
    batch_size: int = option(DEFAULT_BATCH_SIZE, "contexts per forward pass: a cell runs one context per part of "
                             "its output genes, and a pass holds at least one cell")
    precision: str = option("auto", PRECISION_HELP, choices=PRECISIONS)
    organism: str | None = option(None, ORGANISM_HELP)
    seed: int = option(0, "the random anchor genes of each context")


@dataclass
class AdaptOptions:
    """Options of a self-supervised adaptation (`train.finetune`); each field documented once, here."""

    steps: int = option(200, "optimiser steps (denoising + bottleneck on the user's cells; ~1.4 s each at "
                        "batch 16 on one CPU core with the shipped model)")
    lr: float = option(1e-4, "peak learning rate (AdamW; warm-up over a tenth of the steps, then cosine)")
    batch_size: int = option(16, "cells per step")
    max_cells: int | None = option(None, "adapt on at most this many cells, drawn at random (seed)", kind="int")
    seed: int = option(0, "random draws: cells, contexts, thinning, held-out tenth")
    organism: str | None = option(None, ORGANISM_HELP)
