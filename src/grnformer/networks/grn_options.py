"""Options of the network commands (grn, diffnet), as dataclasses whose fields are documented once and become the
CLI's flags. Standard library only at import (see `inference.option_fields`)."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from grnformer.errors import InputError
from grnformer.inference.option_fields import (
    BATCH_SIZE_HELP,
    DEFAULT_BATCH_SIZE,
    DEFAULT_N_GENES,
    GENE_SETS,
    MAX_MISSING_GENES,
    ORGANISM_HELP,
    PRECISION_HELP,
    PRECISIONS,
    option,
)
from grnformer.networks.methods import METHODS, get_method, method_help

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from grnformer.bundle.checkpoint import Bundle
    from grnformer.networks.heads import HeadSelection
    from grnformer.networks.prior import Prior

REGULATOR_SETS = ("tfs", "all")
DIRECTIONS = ("kq", "qk")
FILTERS = ("none", "topk", "above_uniform", "stable")
CORRECTIONS = ("centre_q", "none")
# The attention read-out's defaults, chosen by benchmarks/bench_attention_settings.py's rule on development pairs
# (2026-12-06: 'none' over 'centre_q', which had been chosen on what are now evaluation sets);
# tests/test_attention_settings.py checks they are benchmarks/results/attention_settings.json's choice.
DEFAULT_CORRECTION = "none"
DEFAULT_DIRECTION = "kq"
FUSION_COMPONENTS = ("attention", "pearson", "spearman", "embedding", "denoised", "boosted")
# What a per-type network shows (`networks.specificity`; 'share' chosen on PBMC3k, benchmarks/bench_specificity.py)
SPECIFICITIES = ("none", "share", "contrast", "zscore")
SPECIFICITY_HELP = (
    "with groupby, what each group's network shows. none: the method's network of the group's cells alone (hub TFs "
    "lead every type); share (data methods pearson/spearman): the group's share of the all-cells network, i.e. "
    "the co-variation of two genes within the group plus their co-elevation in it (both genes higher in the "
    "group than over all cells): 'specific' = what this group adds to the all-cells network, so a regulator "
    "leads when it is expressed higher in the group and moves with the group's genes (lineage TFs); contrast: "
    "each edge minus its mean over the other groups; zscore: each edge's z-score over the groups (any method)")
# The network protocol's rule chose these on its development pairs (protocol version 2: bench/protocol.py,
# benchmarks/bench_protocol.py); tests/test_protocol.py checks they are benchmarks/results/protocol.json's
# "default". RESULTS.md, "Networks: protocol v2", has the table and the leave-one-dataset-out check.
DEFAULT_FUSION = "attention:0.5,spearman:0.5"
DEFAULT_METHOD = "spearman"
# Chosen by benchmarks/bench_priors.py's rule on development pairs whose truths share no source with the prior;
# tests/test_prior.py checks it is benchmarks/results/priors.json's "prior_weight".
DEFAULT_PRIOR_WEIGHT = 1.0
PRIOR_HELP = ("a TF→target table (csv/tsv: regulator, target; a header line regulator,target or similar is "
              "skipped) laid over the network (`networks.prior`): each edge's rank among the network's edges, "
              "scaled to (0, 1], plus prior_weight when the table holds it. No prior ships with grnformer; bring "
              "one from another assay than the truths you score on (a ChIP prior scored on ChIP truths of the same "
              "experiments only finds itself)")
# Shared by grn and diffnet, written once.
DIRECTION_HELP = f"rows = keys (kq) or queries (qk); default {DEFAULT_DIRECTION}"
CORRECTION_HELP = ("centre_q: subtract the mean query over the network genes before the softmax (removes the "
                   "per-key bias every query shares, which makes a few genes hub regulators of every gene); none: "
                   f"the raw maps; default {DEFAULT_CORRECTION}, chosen on development pairs "
                   "(benchmarks/results/attention_settings.json)")

# Every GRNOptions field's role in a network file, declared once (tests/test_network_settings.py checks that each
# field has exactly one). A network setting changes what a network holds: uns['grn'] records it
# (`GRNOptions.recorded`) and a resumed run compares it (`networks.files.RESUME_KEYS` derives from this tuple), so
# a setting cannot change the networks and be skipped by a resume (fusion_weights and context_length once were). A
# run setting changes how a run goes or which networks it makes, never a network's values.
NETWORK_SETTINGS = ("method", "fusion_weights", "regulators", "direction", "correction", "contrast", "specificity",
                    "max_regulators",
                    "adapt_steps", "n_bootstrap", "min_stability", "heads", "filter", "top_k", "symmetrise",
                    "keep_heads", "genes", "n_genes", "groupby", "max_cells", "context_length", "precision", "seed",
                    "organism", "prior", "prior_weight")
RUN_SETTINGS = ("max_missing", "groups", "batch_size", "one_pass", "include_all")


# What a head selection depends on: every GRNOptions field has one role here (tests/test_heads.py checks that none
# is left out, so a new option cannot slip past select-heads as `correction` once did). The weights are fitted on
# per-head maps, so what changes those maps is recorded in the selection's JSON and compared by grn when the
# selection is applied:
# - refused on a mismatch: the weights would be applied to maps of another kind and mean nothing there;
SELECTION_REFUSES = {
    "direction": "the other direction transposes every head's map",
    "correction": "each head's map is corrected otherwise, so the weights were fitted on other maps",
    "method": "compared as the maps the method reads (fused reads mean_qk's): a softmax of the mean q·k and a mean "
              "of per-cell softmaxes spread differently, and the weights are on the scale of the fitted maps",
}
# - warned: legitimate uses the fit did not see (whether the heads keep their roles there is not measured);
SELECTION_WARNS = {
    "context_length": "every q and k comes from contexts of another length (a longer context is how per-cell maps "
                      "cover more genes)",
    "genes": "compared as the kind of contexts, the network genes or random draws of each cell's expressed genes: "
             "q and k are averaged over other contexts (other genes of the same kind are what a selection is for)",
    "adapt_steps": "the heads of an adapted model have moved from those the weights were fitted on (adapting to the "
                   "cells at hand is the point of adapt_steps)",
}
# - free: which cells and genes the fit reads and how the run goes; a selection is meant for other cells and genes,
#   so these are select-heads options but neither recorded nor compared;
SELECTION_FREE = ("n_genes", "max_missing", "regulators", "max_cells", "batch_size", "precision", "seed", "organism")
# - fixed (select-heads refuses them): they act on the network after the heads are weighed (filters,
#   symmetrisation, contrast, fusion, regulator rows of perturb), choose groups, or need a selection already.
SELECTION_FIXED = ("groupby", "groups", "heads", "filter", "top_k", "n_bootstrap", "min_stability", "symmetrise",
                   "keep_heads", "fusion_weights", "max_regulators", "contrast", "one_pass", "include_all",
                   "specificity", "prior", "prior_weight")
# The options select-heads takes (its CLI flags): the recorded ones and the free ones.
SELECT_HEADS_OPTIONS = (*SELECTION_REFUSES, *SELECTION_WARNS, *SELECTION_FREE)


def compared_as(name: str, value: Any) -> Any:
    """A recorded setting in the form grn compares it (see SELECTION_REFUSES and SELECTION_WARNS): a method as the
    maps it reads, genes as the kind of contexts, numbers as ints, the rest as text."""
    if name == "method":
        return get_method(str(value)).accumulates
    if name == "genes":
        return "random_expressed" if isinstance(value, str) and value == "random_expressed" else "network genes"
    if name in ("context_length", "adapt_steps"):
        return int(value)
    return str(value)


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
        None, "'mean' (default: every head weighs the same) or a head selection (JSON from select-heads); refused "
        f"when fitted with another {', '.join(SELECTION_REFUSES)}, warned for another "
        f"{', '.join(SELECTION_WARNS)}")
    direction: str | None = option(None, DIRECTION_HELP + "; a head selection sets it", choices=DIRECTIONS)
    correction: str = option(DEFAULT_CORRECTION, CORRECTION_HELP, choices=CORRECTIONS)
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
    batch_size: int = option(DEFAULT_BATCH_SIZE, BATCH_SIZE_HELP)
    precision: str = option("auto", PRECISION_HELP, choices=PRECISIONS)
    seed: int = option(0, "random draws: cells (max_cells), random contexts, select-heads' split")
    organism: str | None = option(None, ORGANISM_HELP)
    contrast: bool = option(False, "with groupby: each group's network minus the all-cells network (what is "
                            "stronger in the group; negative = weaker), from one pass over every cell")
    specificity: str = option("none", SPECIFICITY_HELP, choices=SPECIFICITIES)
    prior: str | Path | Prior | None = option(None, PRIOR_HELP, kind="str")
    prior_weight: float = option(DEFAULT_PRIOR_WEIGHT, "with prior: what a prior edge adds to its rank in (0, 1] "
                                 "(0: no change; 1 or more: every prior edge ahead of every other, in the data's "
                                 f"order; default {DEFAULT_PRIOR_WEIGHT:g}, chosen on development pairs whose "
                                 "truths share no source with the prior, benchmarks/results/priors.json)")
    adapt_steps: int = option(0, "first adapt the model to these cells for this many self-supervised steps "
                              "(`grnformer adapt`; 0: zero-shot)")
    one_pass: bool = option(False, "groups from a single pass over the union of their cells, each batch row "
                            "feeding its group's accumulator (one accumulator per group in memory)", cli=False)
    include_all: bool = option(False, "with groupby (implies one_pass): also the network of every cell, key "
                               "'all' (the cells in no listed group included)", cli=False)
    selection: HeadSelection | None = field(default=None, repr=False, init=False)
    prior_table: Prior | None = field(default=None, repr=False, init=False)  # the prior, read by validate

    def recorded(self, bundle: Bundle) -> dict[str, Any]:
        """The NETWORK_SETTINGS of a validated run as a network file records them: a setting that does not act
        under this method (another method's `own_settings`) or filter is None, gene and regulator lists are
        'list', a head selection its named weights, fusion weights their normalised text (so
        'pearson:9,attention:1' records as 'attention:0.1,pearson:0.9') and the context length resolved."""
        from grnformer.networks.from_data import parse_weights

        weights = parse_weights(self.fusion_weights, FUSION_COMPONENTS)
        total = sum(weights.values())
        others = {name for m in METHODS.values() for name in m.own_settings} - set(get_method(self.method).own_settings)
        values = {name: None if name in others else getattr(self, name) for name in NETWORK_SETTINGS}
        values.update(
            fusion_weights=",".join(f"{c}:{weights[c] / total:.6g}" for c in FUSION_COMPONENTS if weights.get(c, 0))
            if "fusion_weights" not in others else None,
            min_stability=self.min_stability if self.filter == "stable" else None,
            top_k=self.top_k if self.filter == "topk" else None,
            regulators=self.regulators if isinstance(self.regulators, str) else "list",
            genes=self.genes if isinstance(self.genes, str) else "list",
            heads="mean" if self.selection is None else self.selection.named_weights(),
            context_length=self.context(bundle),
            prior=None if self.prior_table is None else self.prior_table.sha256,
            prior_weight=None if self.prior_table is None else float(self.prior_weight))
        return values

    def context(self, bundle: Bundle) -> int:
        """Genes per context at inference: the option, or the model's training context."""
        return self.context_length or bundle.config.context_length

    @property
    def random_contexts(self) -> bool:
        """Genome-wide mode: each cell's context drawn among its expressed genes, not the network genes."""
        return isinstance(self.genes, str) and self.genes == "random_expressed"

    @property
    def weighs_heads(self) -> bool:
        """A head selection was given (heads other than None or 'mean')."""
        return self.heads is not None and not (isinstance(self.heads, str) and self.heads == "mean")

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
        if not method.reads_attention and (opts.keep_heads or opts.weighs_heads):
            raise InputError(f"method '{opts.method}' reads no attention: drop keep_heads and heads.")
        opts._resolve_heads(bundle)
        if method.fixed_contexts and opts.random_contexts:
            raise InputError(f"method '{opts.method}' needs one shared context: give a gene list, 'hvg' or "
                             "'most_expressed', not 'random_expressed'.")
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
        if opts.contrast and (opts.groupby is None or not method.attention_only or opts.n_bootstrap
                              or opts.keep_heads):
            raise InputError("contrast subtracts the all-cells attention network from each group's: it needs "
                             "groupby, method mean_qk or per_cell, and no n_bootstrap or keep_heads.")
        _check_specificity(opts)
        _read_prior(opts)
        if opts.include_all and opts.groupby is None:
            raise InputError("include_all adds the all-cells network to per-group ones: it needs groupby.")
        return opts

    def plain(self) -> GRNOptions:
        """The options of the plain per-group networks a specificity is formed from (unfiltered, unsymmetrised,
        no prior), with this run's head selection (`dataclasses.replace` leaves the read fields at None)."""
        plain = dataclasses.replace(self, specificity="none", filter="none", symmetrise=False, prior=None)
        plain.selection = self.selection
        return plain

    def _resolve_heads(self, bundle: Bundle) -> None:
        """Load the head selection and compare what it was fitted on with this run (SELECTION_REFUSES: InputError,
        SELECTION_WARNS: a warning; a field the file does not record is not checked, with a warning)."""
        from grnformer.networks.heads import HeadSelection, load_heads

        c = bundle.config
        if self.weighs_heads:
            self.selection = self.heads if isinstance(self.heads, HeadSelection) else load_heads(self.heads)
            sel = self.selection
            if (sel.n_layers, sel.n_heads) != (c.n_layers, c.n_heads):
                raise InputError(f"the head selection is for {sel.n_layers} layers × {sel.n_heads} heads; this "
                                 f"model has {c.n_layers} × {c.n_heads}.")
            now = {name: getattr(self, name) for name in (*SELECTION_REFUSES, *SELECTION_WARNS)}
            now.update(direction=self.direction or sel.direction, context_length=self.context(bundle))
            fitted = {**sel.fitted_with, "direction": sel.direction}
            missing = [name for name in now if name not in fitted]
            if missing:
                warnings.warn(f"the head selection does not record the {', '.join(missing)} it was fitted with "
                              f"(a file from an older grnformer, or made by hand): not checked.", stacklevel=4)
            for name, why in {**SELECTION_REFUSES, **SELECTION_WARNS}.items():
                if name not in fitted:
                    continue
                was, asked = compared_as(name, fitted[name]), compared_as(name, now[name])
                if was != asked:
                    message = (f"the head selection was fitted with {name} '{was}' but {name} '{asked}' was asked "
                               f"for: {why}")
                    if name in SELECTION_REFUSES:
                        raise InputError(message + ". Fit one with these options (select-heads).")
                    warnings.warn(message + ".", stacklevel=4)
            self.direction = sel.direction
        self.direction = self.direction or DEFAULT_DIRECTION

    def head_weights(self, bundle: Bundle, device: torch.device) -> Tensor:
        import torch

        c = bundle.config
        if self.selection is None:
            return torch.full((c.n_layers, c.n_heads), 1.0 / (c.n_layers * c.n_heads), device=device)
        return torch.as_tensor(self.selection.weights, dtype=torch.float32, device=device)


def _read_prior(opts: GRNOptions) -> None:
    """Read the prior into ``opts.prior_table`` (InputError for a bad file or weight, before any model run)."""
    from grnformer.networks.prior import Prior, read_prior

    opts.prior_table = None
    if opts.prior is None:
        return
    if not opts.prior_weight >= 0:
        raise InputError(f"prior_weight must be >= 0; got {opts.prior_weight}.")
    if opts.filter == "above_uniform":
        raise InputError("filter 'above_uniform' compares attention with a uniform head's level, which a prior's "
                         "re-ranking removes: use filter 'topk' or 'none' with a prior.")
    opts.prior_table = opts.prior if isinstance(opts.prior, Prior) else read_prior(opts.prior)


def _check_specificity(opts: GRNOptions) -> None:
    """InputError for a specificity the run cannot form (before any model run)."""
    if opts.specificity not in SPECIFICITIES:
        raise InputError(f"specificity must be one of {', '.join(SPECIFICITIES)}; got '{opts.specificity}'.")
    if opts.specificity == "none":
        return
    if opts.groupby is None:
        raise InputError(f"specificity '{opts.specificity}' compares groups of cells: it needs groupby.")
    if opts.specificity == "share" and get_method(opts.method).correlation is None:
        raise InputError(f"specificity 'share' splits the cells' own correlation (method pearson or spearman); "
                         f"got method '{opts.method}': use specificity 'contrast' or 'zscore' for it.")
    if (opts.filter not in ("none", "topk") or opts.contrast or opts.keep_heads or opts.n_bootstrap
            or opts.include_all):
        raise InputError(f"specificity '{opts.specificity}' is formed from the plain per-group networks: it takes "
                         "filter 'none' or 'topk' and no contrast, keep_heads, n_bootstrap or include_all (make the "
                         "all-cells network in a run of its own).")


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
    correction: str = option(DEFAULT_CORRECTION, CORRECTION_HELP, choices=CORRECTIONS)
    direction: str = option(DEFAULT_DIRECTION, DIRECTION_HELP, choices=DIRECTIONS)
    n_drawn: int = option(30, "changed edges drawn in the report (strongest first)")
    batch_size: int = option(DEFAULT_BATCH_SIZE, BATCH_SIZE_HELP)
    precision: str = option("auto", PRECISION_HELP, choices=PRECISIONS)
    seed: int = option(0, "random draws: cells (max_cells), permutations")
    organism: str | None = option(None, ORGANISM_HELP)

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
