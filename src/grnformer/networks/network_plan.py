"""What a network run computes, fixed before the model runs: the prepared cells, the network genes, the regulator
rows, each network's cells, and the contexts the cells run in.

Everything here is checked (InputError) before any model pass, so a bad request costs no compute. `networks.grn`
plans a run in memory; `plan_streamed` plans one over a file too large for memory (`streaming_correlation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData
from torch import Tensor

from grnformer.bundle.checkpoint import Bundle
from grnformer.data.collate import Collator
from grnformer.data.genes import tf_symbols
from grnformer.data.input.gene_names import match_names
from grnformer.errors import InputError
from grnformer.inference.gene_sets import chunk_genes, select_genes
from grnformer.inference.loop import context_collator
from grnformer.inference.prepared import Prepared, cells_in_groups, prepare_input
from grnformer.networks.grn_options import GRNOptions
from grnformer.networks.methods import get_method
from grnformer.networks.network_adata import network_names
from grnformer.networks.prior import lay_prior
from grnformer.networks.streaming_correlation import StreamedCells, streamed_cells


@dataclass
class NetworkPlan:
    """What a run computes, fixed before the model runs: the prepared cells, the network genes (prepared
    columns), each network's cells (prepared rows, after max_cells) and the cells in no group."""

    prep: Prepared
    cols: np.ndarray
    groups: dict[str, np.ndarray]
    rest: np.ndarray
    regulators: np.ndarray  # [len(cols)] bool: rows that may regulate (others are zero in every network)
    stream: StreamedCells | None = None  # a file too large for memory: data networks stream it, prep holds its head
    known: np.ndarray | None = None  # [len(cols), len(cols)] bool: the prior's edges (`networks.prior`), if any

    def everyone(self) -> np.ndarray:
        """Every planned cell (each group's and those in no group), in row order: the all-cells network's."""
        return np.sort(np.concatenate([self.rest, *self.groups.values()]))

    def regulator_network(self, net: np.ndarray, opts: GRNOptions) -> np.ndarray:
        """A formed network as every method's ends: rows that may not regulate zeroed, then the prior laid over
        it when the options hold one (`networks.prior.lay_prior`; a specificity's plain networks hold none)."""
        net = keep_regulator_rows(net, self.regulators)
        if opts.prior_table is None or self.known is None:
            return net
        return lay_prior(net, self.known, opts.prior_weight)

    def mark_prior(self, net: AnnData, opts: GRNOptions) -> None:
        """varp['GRN_prior']: which edges the prior holds, on a network it was laid over."""
        if opts.prior_table is not None and self.known is not None:
            net.varp["GRN_prior"] = sp.csr_matrix(self.known)


def plan_networks(bundle: Bundle, adata: AnnData, opts: GRNOptions) -> NetworkPlan:
    """Validate the data and choose genes and cells (InputError before any model run).

    Each group is subsampled on its own (a fresh generator from ``seed``), so a group's cells do not depend on
    which other groups run — a resumed run draws the cells the first run drew."""
    prep = prepare_input(bundle, adata, opts.organism)
    cols = select_genes(prep, opts.genes, opts.n_genes, opts.max_missing)
    if get_method(opts.method).one_context and len(cols) > opts.context(bundle):
        raise InputError(f"method '{opts.method}' handles gene sets up to the context length "
                         f"({opts.context(bundle)}); got {len(cols)} genes. Use 'mean_qk', or a longer "
                         f"context_length.")
    groups = cells_in_groups(prep, opts.groupby, opts.groups)
    if opts.specificity != "none":
        from grnformer.networks.specificity import check_groups

        check_groups(groups)
    rest = np.setdiff1d(np.arange(prep.n_cells), np.concatenate([np.empty(0, np.int64), *groups.values()]))
    regulators = regulator_rows(prep, cols, opts.regulators)
    return NetworkPlan(prep, cols, {g: _subsample(r, opts.max_cells, opts.seed) for g, r in groups.items()},
                       _subsample(rest, opts.max_cells, opts.seed), regulators,
                       known=prior_edges(prep, cols, regulators, opts))


def plan_streamed(bundle: Bundle, path: str | Path, opts: GRNOptions, scratch: Path | None = None,
                  progress: bool = True) -> NetworkPlan:
    """`plan_networks` for an h5ad file too large for memory and a data method (`streaming_correlation`): genes
    and cells are chosen as for the file in memory (max_cells drawn from the same generator); the plan's prep
    holds the file's first cells only, for its genes and organism."""
    if opts.adapt_steps or opts.groupby is not None:
        raise InputError("a streamed data network has no model to adapt and no groups: leave adapt_steps and "
                         "groupby out, or use fewer cells (max_cells reads the whole file into memory).")
    head, stream, cols = streamed_cells(bundle, path, opts.genes, opts.n_genes, opts.organism,
                                        progress=progress)
    stream.scratch = scratch
    rows = _subsample(np.arange(len(stream.kept_rows)), opts.max_cells, opts.seed)
    regulators = regulator_rows(head, cols, opts.regulators)
    return NetworkPlan(head, cols, {"all": rows}, rows[:0], regulators, stream,
                       prior_edges(head, cols, regulators, opts))


def regulator_rows(prep: Prepared, cols: np.ndarray, regulators: Sequence[str] | str) -> np.ndarray:
    """[len(cols)] bool: the network genes that may regulate. 'tfs': the organism's TFs (a network of
    regulators that cannot regulate is what made platelet chemokines lead the demo's table); 'all'; or names,
    matched by the one gene-name owner (`data.input.gene_names`)."""
    var = prep.adata.var.iloc[cols]
    if isinstance(regulators, str) and regulators == "all":
        return np.ones(len(cols), dtype=bool)
    if isinstance(regulators, str) and regulators == "tfs":
        mask = np.isin(var["symbol"].astype(str).to_numpy(), list(tf_symbols(prep.organism)))
        what = f"none of the {len(cols):,} network genes is a transcription factor of {prep.organism}"
    else:
        ids = {g for g in match_names([str(r) for r in regulators], prep.organism, prep.vocab).gene_id if g}
        mask = np.isin(var.index.astype(str).to_numpy(), list(ids))
        what = f"none of the {len(regulators):,} given regulators is among the {len(cols):,} network genes"
    if not mask.any():
        raise InputError(f"{what}: add them to the genes, or pass regulators='all'.")
    return mask


def prior_edges(prep: Prepared, cols: np.ndarray, regulators: np.ndarray, opts: GRNOptions) -> np.ndarray | None:
    """[len(cols), len(cols)] bool: the prior's edges among the network genes from rows that may regulate (None
    without a prior); InputError when none is left, before any model run."""
    if opts.prior_table is None:
        return None
    names = network_names(prep, cols).tolist()
    known = opts.prior_table.known(names, prep.organism) & regulators[:, None]
    if not known.any():
        raise InputError(f"none of the prior's {len(opts.prior_table.edges):,} edges joins a regulator row to a "
                         f"network gene ({len(names):,} genes, {int(regulators.sum()):,} of them regulator rows): "
                         f"check the organism and gene names of {opts.prior_table.path}, or add its genes "
                         f"(genes=..., regulators=...).")
    return known


def keep_regulator_rows(net: np.ndarray, regulators: np.ndarray) -> np.ndarray:
    """The network with the rows of genes that may not regulate set to zero."""
    return np.where(regulators[:, None], net, 0).astype(net.dtype, copy=False)


def _subsample(rows: np.ndarray, max_cells: int | None, seed: int) -> np.ndarray:
    if max_cells is None or len(rows) <= max_cells:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, max_cells, replace=False))


def gene_slots(bundle: Bundle, plan: NetworkPlan, dev: torch.device) -> Tensor:
    """[vocab] network-gene index of every token (-1 = not a network gene)."""
    tokens = torch.as_tensor(plan.prep.tokens[plan.cols], device=dev)
    slot_of = torch.full((bundle.config.vocab_size,), -1, dtype=torch.long, device=dev)
    slot_of[tokens] = torch.arange(len(tokens), device=dev)
    return slot_of


def network_collators(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions) -> list[Collator]:
    """One collator per context a cell runs: a random draw of its expressed genes, or each chunk of the genes."""
    L = opts.context(bundle)
    if opts.random_contexts:
        return [context_collator(bundle, "random-expressed", context_length=L, seed=opts.seed)]
    return [context_collator(bundle, "given", chunk, context_length=L, seed=opts.seed)
            for chunk in chunk_genes(plan.prep.tokens[plan.cols], L)]
