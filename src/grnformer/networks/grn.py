"""Gene networks read from the model's attention, for all cells or one per group of cells: the user entry point.

`grn(bundle, adata, GRNOptions(...))` plans the run (`networks.network_plan`: genes, each network's cells),
chooses how the groups' networks are made, and hands each method to the one dispatcher (`networks.dispatch`),
which runs it from its declared traits and assembles each network as an AnnData (`networks.network_adata`).
Files and resume are `networks.files`; head selection from files is `networks.heads_file`; the benchmark
adapter is `bench.grnformer_method`.

Gene sets larger than the model's context are split into near-equal contexts that each cell runs through in
turn; a gene's vectors are still averaged over cells, and Q̄ K̄ᵀ is formed across chunks (genes of different
chunks never attended to each other in a forward pass, but their averaged vectors live in the same space).
With genes='random_expressed' (genome-wide) each cell's context is drawn among its own expressed genes, and a
network gene's vectors are averaged over the cells whose context drew it (`var['n_cells']`).

Groups (one network per value of an obs column) run one after the other, or in one pass over all their cells
with each batch row feeding its own group's accumulator; that pass can also yield the all-cells network (the sum
of the accumulators, plus the cells in no group) at no extra model cost.

Post-processing, in this order: optional symmetrisation ((A + Aᵀ) / 2), then a filter (`networks.attention`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from anndata import AnnData

from grnformer.bundle.checkpoint import Bundle
from grnformer.errors import InputError
from grnformer.inference.device import load_task_bundle
from grnformer.networks.attention import filter_network
from grnformer.networks.dispatch import iter_networks, networks_in_one_pass
from grnformer.networks.grn_options import GRNOptions
from grnformer.networks.network_adata import provenance
from grnformer.networks.network_context import NetworkContext
from grnformer.networks.network_plan import NetworkPlan, plan_networks


def grn(bundle: Bundle | str | Path, adata: AnnData, options: GRNOptions | None = None, *,
        device: str | torch.device | None = None, progress: bool = True) -> AnnData | dict[str, AnnData]:
    """Gene network(s) of ``adata``'s cells from the model's attention (``options``: see `GRNOptions`).

    Returns one AnnData (varp['GRN'], rows = regulators; var['is_tf'], var['gene_id'], var['n_cells']; X = the
    cells' counts of the network genes; uns['grn'] = method and options), or {group: AnnData} with groupby.
    Given gene sets give the same networks with or without one_pass; 'random_expressed' draws other contexts
    when cells are batched differently.

    Per-group networks (groupby) are by default each group's cells alone, which rank the same hub TFs first in
    most cell types. ``specificity='share'`` makes each group's network what is *specific* to it: its share of
    the all-cells network, i.e. two genes' co-variation within the group plus their co-elevation in it (both
    expressed higher in the group than over all cells), so the regulators that lead are those expressed more in
    the group that move with its genes, the lineage TFs (`networks.specificity`; 'contrast' and 'zscore'
    compare each group's plain network with the others' for any method).

    The default method does not change with the number of cells: on development subsamples of 50 to 500 cells
    the best method changed more than once with the count, so no threshold follows and Spearman stays at every
    size (rule and rows: benchmarks/results/few_cells.json, written by benchmarks/bench_few_cells.py)."""
    bundle, dev = load_task_bundle(bundle, device)
    opts = (options or GRNOptions()).validate(bundle)
    plan = plan_networks(bundle, adata, opts)
    bundle = adapted(bundle, adata, opts, dev)
    if opts.include_all and "all" in plan.groups:
        raise InputError(f"obs['{opts.groupby}'] has a group named 'all', the key of the all-cells network; "
                         f"rename it or leave include_all off.")
    nets = group_networks(bundle, plan, opts, dev, progress)
    return nets if opts.groupby is not None else nets["all"]


def group_networks(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, dev: torch.device, progress: bool = True
                   ) -> dict[str, AnnData]:
    """Every planned group's network (and 'all' with include_all); with a specificity, each group's network is
    what sets it apart, formed from the plain ones by `networks.specificity` ('all' stays plain)."""
    if opts.specificity != "none":
        return _specific_networks(bundle, plan, opts, dev, progress)
    if opts.one_pass or opts.include_all or opts.contrast:
        return networks_in_one_pass(bundle, plan, opts, dev, opts.include_all, progress)
    return dict(iter_networks(bundle, plan, opts, dev, list(plan.groups), progress))


def adapted(bundle: Bundle, adata: AnnData, opts: GRNOptions, dev: torch.device) -> Bundle:
    """The bundle itself, or with adapt_steps a copy adapted to ``adata``'s cells (`tasks.adapt`)."""
    if not opts.adapt_steps:
        return bundle
    from grnformer.tasks.adapt import adapt_bundle
    from grnformer.tasks.task_options import AdaptOptions

    return adapt_bundle(bundle, adata, AdaptOptions(steps=opts.adapt_steps, seed=opts.seed,
                                                    organism=opts.organism), device=dev)[0]


def _specific_networks(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, dev: torch.device, progress: bool
                       ) -> dict[str, AnnData]:
    """Each group's network of what sets it apart (`networks.specificity`), formed from the plain networks (and
    for 'share' from every planned cell's expression), then post-processed as asked."""
    from grnformer.networks.specificity import specific_matrices

    nets = group_networks(bundle, plan, opts.plain(), dev, progress)
    everyone = plan.everyone()
    x = NetworkContext(bundle, plan, opts, everyone, dev).log_expression() if opts.specificity == "share" else None
    mats = specific_matrices(opts.specificity, {g: nets[g].varp["GRN"] for g in plan.groups},
                             {g: np.isin(everyone, rows) for g, rows in plan.groups.items()}, x, opts.method)
    for g, m in mats.items():
        m = plan.regulator_network((m + m.T) / 2 if opts.symmetrise else m, opts)
        nets[g].varp["GRN"] = filter_network(m, opts.filter, opts.top_k, 0.0)
        plan.mark_prior(nets[g], opts)
        nets[g].uns["grn"] = {**provenance(bundle, plan.prep, opts, g, len(plan.groups[g]),
                                           nets[g].uns["grn"]["n_contexts_per_cell"]), "uniform_level": 0.0}
    return nets
