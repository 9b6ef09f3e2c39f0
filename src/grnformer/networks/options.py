"""Options of the network commands (grn, diffnet), as dataclasses whose fields are documented once and become the
CLI's flags. Standard library only at import (see `inference.options`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from grnformer.errors import InputError
from grnformer.inference.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_N_GENES,
    GENE_SETS,
    MAX_MISSING_GENES,
    PRECISIONS,
    option,
)
from grnformer.networks.methods import METHODS, get_method, method_help

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from grnformer.networks.heads import HeadSelection
    from grnformer.train.checkpoint import Bundle

REGULATOR_SETS = ("tfs", "all")
DIRECTIONS = ("kq", "qk")
FILTERS = ("none", "topk", "above_uniform", "stable")
CORRECTIONS = ("centre_q", "none")
FUSION_COMPONENTS = ("attention", "pearson", "spearman", "embedding", "denoised")
# Chosen on the protocol's development pairs only (bench/protocol.py, benchmarks/bench_protocol.py,
# benchmarks/results/protocol.json): the best weights of the grid (development median AUPRC ratio 1.333), and the
# best method, Spearman (1.333; GENIE3 1.52 is no grn method), which ties that fusion at 1e-4 for a fraction of
# its cost, so it is the default read-out. RESULTS.md, "Networks: the protocol", has the whole table.
DEFAULT_FUSION = "attention:0.1,spearman:0.9"
DEFAULT_METHOD = "spearman"


@dataclass
class GRNOptions:
    """Everything a network run can be asked for; each field is documented once, here."""

    genes: Sequence[str] | str = option(
        "hvg", "'hvg', 'hvg+tfs' (the n_genes most variable genes plus the TFs among the next n_genes: BEELINE's "
        "'TFs + N'), 'most_expressed', 'random_expressed' (genome-wide: each cell's context drawn among its "
        "expressed genes), or gene names (Ensembl IDs or symbols; on the CLI a comma-separated list or a file)")
    n_genes: int | None = option(DEFAULT_N_GENES, "with a gene-set keyword: how many genes (chosen once over all "
                                 "cells, so per-group networks share genes)", kind="int")
    max_missing: float = option(MAX_MISSING_GENES, "with gene names: the share of the list that may be missing "
                                "from the data (left out with a warning, listed in uns['grn']['genes_not_found']); "
                                "more is an error")
    regulators: Sequence[str] | str = option(
        "tfs", "rows that may regulate: 'tfs' (default: the organism's transcription factors among the network "
        "genes, as GENIE3 with a TF list, SCENIC and BEELINE do), 'all' (every network gene), or gene names (CLI: "
        "a comma-separated list or a file); other rows are zero and var['is_regulator'] marks the rows")
    groupby: str | None = option(None, "obs column: one network per group (e.g. cell_type)")
    groups: Sequence[str] | None = option(None, "with groupby: only these groups, in this order", kind="list")
    heads: str | Path | HeadSelection | Mapping | None = option(
        None, "'mean' (default: every head weighs the same) or a head selection (JSON from select-heads)")
    direction: str | None = option(None, "rows = keys (kq, default) or queries (qk); a head selection sets it",
                                   choices=DIRECTIONS)
    correction: str = option("centre_q", "centre_q: subtract the mean query over the network genes before the "
                             "softmax (removes the per-key bias every query shares, which made hub genes); none: "
                             "the raw maps", choices=CORRECTIONS)
    filter: str = option("none", "'topk': each regulator's top_k strongest targets; 'above_uniform': scores "
                         "above a uniformly attending head's; 'stable': edges with stability >= min_stability (needs "
                         "n_bootstrap)", choices=FILTERS)
    top_k: int = option(20, "targets kept per regulator by filter 'topk'")
    n_bootstrap: int = option(0, "mean_qk: bootstrap replicates of the cells (Poisson weights, same forward "
                              "passes); varp['GRN_stability'] = share of replicates in which an edge is among its "
                              "regulator's top_k targets")
    min_stability: float = option(0.5, "filter 'stable': the least stability an edge keeps")
    symmetrise: bool = option(False, "replace the network A by (A + Aᵀ) / 2 before filtering")
    keep_heads: bool = option(False, "also store every head's map in uns['grn_heads'] (names in "
                              "uns['grn_head_names'])")
    method: str = option(DEFAULT_METHOD, f"(default {DEFAULT_METHOD}, chosen by the network protocol on its "
                         f"development pairs) " + method_help(), choices=tuple(METHODS))
    fusion_weights: str = option(DEFAULT_FUSION, "method fused: weight of each component, name:weight separated "
                                 f"by commas; components {', '.join(FUSION_COMPONENTS)} (denoised costs a "
                                 "denoising pass)")
    max_regulators: int | None = option(50, "perturb: knock out at most this many network genes (TFs first, "
                                        "then by cells expressing them); cost ≈ one forward per regulator and "
                                        "batch of its expressing cells", kind="int")
    max_cells: int | None = option(None, "at most this many cells per network, drawn at random (seed)",
                                   kind="int")
    context_length: int | None = option(
        None, "genes per context at inference (default: the model's training context); a longer one holds more "
        "network genes together, so per-cell maps cover them (attention cost grows with its square)", kind="int")
    batch_size: int = option(DEFAULT_BATCH_SIZE, "cells per forward pass")
    precision: str = option("auto", "auto: bf16 on GPUs that support it, fp32 elsewhere", choices=PRECISIONS)
    seed: int = option(0, "random draws: cells (max_cells), random contexts, select-heads' split")
    organism: str | None = option(None, "human or mouse, when obs has no organism_ontology_term_id")
    contrast: bool = option(False, "with groupby: each group's network minus the all-cells network (what is "
                            "stronger in the group; negative = weaker), from one pass over every cell")
    adapt_steps: int = option(0, "first adapt the model to these cells for this many self-supervised steps "
                              "(`grnformer adapt`; 0: zero-shot)")
    one_pass: bool = option(False, "groups from a single pass over the union of their cells, each batch row "
                            "feeding its group's accumulator (one accumulator per group in memory)", cli=False)
    include_all: bool = option(False, "with groupby (implies one_pass): also the network of every cell, key "
                               "'all' (the cells in no listed group included)", cli=False)
    selection: HeadSelection | None = field(default=None, repr=False, init=False)

    def context(self, bundle: Bundle) -> int:
        """Genes per context at inference: the option, or the model's training context."""
        return self.context_length or bundle.config.context_length

    @property
    def random_contexts(self) -> bool:
        """Genome-wide mode: each cell's context drawn among its expressed genes, not the network genes."""
        return isinstance(self.genes, str) and self.genes == "random_expressed"

    def validate(self, bundle: Bundle) -> GRNOptions:
        """A checked copy (InputError before any model run), with the head selection loaded and the direction
        and gene list resolved."""
        from grnformer.inference.gene_sets import parse_gene_option

        opts = dataclasses.replace(self, genes=parse_gene_option(self.genes, GENE_SETS),
                                   regulators=parse_gene_option(self.regulators, REGULATOR_SETS))
        method = get_method(opts.method)
        for name, values in (("filter", FILTERS), ("precision", PRECISIONS),
                             ("correction", CORRECTIONS)):
            if getattr(opts, name) not in values:
                raise InputError(f"{name} must be one of {', '.join(values)}; got '{getattr(opts, name)}'.")
        if opts.direction is not None and opts.direction not in DIRECTIONS:
            raise InputError(f"direction must be 'kq' (rows = keys) or 'qk' (rows = queries); got "
                             f"'{opts.direction}'.")
        for name, low in (("top_k", 1 if opts.filter == "topk" else None), ("max_cells", 1), ("batch_size", 1),
                          ("seed", 0), ("max_regulators", 1), ("n_bootstrap", 0), ("adapt_steps", 0),
                          ("context_length", 8)):
            value = getattr(opts, name)
            if low is not None and value is not None and value < low:
                raise InputError(f"{name} must be >= {low} (got {value}).")
        opts._resolve_heads(bundle)
        if method.fixed_contexts and opts.random_contexts:
            raise InputError(f"method '{opts.method}' needs one shared context: give a gene list, 'hvg' or "
                             "'most_expressed', not 'random_expressed'.")
        if not method.reads_attention and (opts.keep_heads or opts.selection is not None):
            raise InputError(f"method '{opts.method}' reads no attention: drop keep_heads and heads.")
        if opts.n_bootstrap and not method.bootstrap:
            raise InputError(f"n_bootstrap is for method 'mean_qk' (its replicates share the forward passes); "
                             f"got method '{opts.method}'.")
        from grnformer.networks.from_data import parse_weights

        try:
            parse_weights(opts.fusion_weights, FUSION_COMPONENTS)
        except ValueError as err:
            raise InputError(f"fusion_weights: {err}.") from None
        if opts.filter == "stable" and not opts.n_bootstrap:
            raise InputError("filter 'stable' needs n_bootstrap > 0 (the stability comes from the replicates).")
        if not 0 < opts.min_stability <= 1:
            raise InputError(f"min_stability must be in (0, 1]; got {opts.min_stability}.")
        if opts.contrast and (opts.groupby is None or opts.method not in ("mean_qk", "per_cell") or opts.n_bootstrap
                              or opts.keep_heads):
            raise InputError("contrast subtracts the all-cells attention network from each group's: it needs "
                             "groupby, method mean_qk or per_cell, and no n_bootstrap or keep_heads.")
        if opts.include_all and opts.groupby is None:
            raise InputError("include_all adds the all-cells network to per-group ones: it needs groupby.")
        return opts

    def _resolve_heads(self, bundle: Bundle) -> None:
        from grnformer.networks.heads import HeadSelection, load_heads

        c = bundle.config
        if self.heads is not None and not (isinstance(self.heads, str) and self.heads == "mean"):
            self.selection = self.heads if isinstance(self.heads, HeadSelection) else load_heads(self.heads)
            if (self.selection.n_layers, self.selection.n_heads) != (c.n_layers, c.n_heads):
                raise InputError(f"the head selection is for {self.selection.n_layers} layers × "
                                 f"{self.selection.n_heads} heads; this model has {c.n_layers} × {c.n_heads}.")
            if self.direction is not None and self.direction != self.selection.direction:
                raise InputError(f"the head selection was fitted with direction '{self.selection.direction}' "
                                 f"but direction '{self.direction}' was asked for.")
            if self.selection.correction is not None and self.selection.correction != self.correction:
                raise InputError(f"the head selection was fitted on maps with correction "
                                 f"'{self.selection.correction}' but correction '{self.correction}' was asked "
                                 f"for; its weights mean nothing there.")
            self.direction = self.selection.direction
        self.direction = self.direction or "kq"

    def head_weights(self, bundle: Bundle, device: torch.device) -> Tensor:
        import torch

        c = bundle.config
        if self.selection is None:
            return torch.full((c.n_layers, c.n_heads), 1.0 / (c.n_layers * c.n_heads), device=device)
        return torch.as_tensor(self.selection.weights, dtype=torch.float32, device=device)


@dataclass
class DiffNetOptions:
    """Options of a differential network (`networks.diffnet`); each field documented once, here."""

    genes: Sequence[str] | str = option("hvg", "network genes, as for grn (chosen over the two groups' cells)")
    n_genes: int | None = option(300, "with a gene-set keyword: how many genes", kind="int")
    regulators: Sequence[str] | str = option("tfs", "rows tested as regulators, as for grn (default: the "
                                             "organism's TFs)")
    max_cells: int | None = option(300, "at most this many cells per group, drawn at random (seed)", kind="int")
    n_permutations: int = option(200, "label permutations of the null distribution (blocks of cells swap groups)")
    cells_per_block: int = option(4, "cells per exchangeable block: the permutation unit (memory ∝ blocks)")
    fdr: float = option(0.1, "false discovery rate of the edges reported as changed (Benjamini-Hochberg)")
    correction: str = option("centre_q", "as for grn", choices=CORRECTIONS)
    direction: str = option("kq", "as for grn", choices=DIRECTIONS)
    n_drawn: int = option(30, "changed edges drawn in the report (strongest first)")
    batch_size: int = option(DEFAULT_BATCH_SIZE, "cells per forward pass")
    precision: str = option("auto", "auto: bf16 on GPUs that support it, fp32 elsewhere", choices=PRECISIONS)
    seed: int = option(0, "random draws: cells (max_cells), permutations")
    organism: str | None = option(None, "human or mouse, when obs has no organism_ontology_term_id")

    def validate(self) -> DiffNetOptions:
        for name, low in (("n_permutations", 10), ("cells_per_block", 1), ("batch_size", 1), ("max_cells", 2),
                          ("n_drawn", 1), ("seed", 0)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise InputError(f"{name} must be >= {low} (got {value}).")
        if not 0 < self.fdr < 1:
            raise InputError(f"fdr must be in (0, 1); got {self.fdr}.")
        if isinstance(self.genes, str) and self.genes == "random_expressed":
            raise InputError("diffnet compares fixed network genes: give a gene list, 'hvg' or 'most_expressed'.")
        return self

    def network_options(self, groupby: str, groups: Sequence[str]) -> GRNOptions:
        """The grn options that choose the same genes and cells."""
        return GRNOptions(genes=self.genes, n_genes=self.n_genes, regulators=self.regulators, groupby=groupby,
                          groups=list(groups),
                          max_cells=self.max_cells, batch_size=self.batch_size, precision=self.precision,
                          seed=self.seed, organism=self.organism, correction=self.correction,
                          direction=self.direction)
