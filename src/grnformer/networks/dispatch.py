"""The one dispatcher of the network methods: it runs a method from the traits it declares
(`networks.methods`), so neither `grn`, its files nor diffnet branch on a method's name.

What a method accumulates decides how its cells are read: 'mean_qk' and 'per_cell' feed the model's q/k of every
batch into an accumulator (`networks.attention`), one per network or, in one pass, one per group; 'knockout'
runs its own forward passes (`networks.perturb.knockout_network`); nothing (a data method, the model's
embeddings or denoised expression) runs no attention pass. The method's ``form`` then makes the network, which
is symmetrised, its non-regulator rows zeroed and filtered as asked.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np
import torch
from anndata import AnnData

from grnformer.bundle.checkpoint import Bundle
from grnformer.errors import InputError
from grnformer.inference.distributed import combine_sums, current_shard
from grnformer.inference.loop import run_model
from grnformer.networks.attention import (
    Accumulator,
    Bootstrapped,
    MeanAttention,
    MeanQK,
    aggregate,
    filter_network,
    stability,
)
from grnformer.networks.grn_options import GRNOptions
from grnformer.networks.methods import get_method
from grnformer.networks.network_adata import network_adata, provenance
from grnformer.networks.network_context import NetworkContext
from grnformer.networks.network_plan import NetworkPlan, gene_slots, keep_regulator_rows, network_collators
from grnformer.networks.perturb import knockout_collators, knockout_network, knockout_regulators


def new_accumulator(bundle: Bundle, n_genes: int, opts: GRNOptions, dev: torch.device) -> Accumulator | None:
    """The method's accumulator over cells (None: the method reads no attention, no forward pass is run)."""
    c = bundle.config
    kind = get_method(opts.method).accumulates
    if kind not in ("mean_qk", "per_cell"):
        return None
    if kind == "mean_qk":
        def make() -> MeanQK:
            return MeanQK(c.n_layers, c.n_heads, c.d_head, n_genes, dev, centre_q=opts.correction == "centre_q")
        if opts.n_bootstrap and current_shard() is not None:
            raise InputError("n_bootstrap draws one random stream over all cells and does not run over several "
                             "processes yet: run it in one process.")
        return Bootstrapped(make, opts.n_bootstrap, opts.seed) if opts.n_bootstrap else make()
    return MeanAttention(c.n_layers, c.n_heads, n_genes, dev, centre_q=opts.correction == "centre_q")


def contexts_per_cell(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, rows: np.ndarray) -> int:
    """The contexts each cell of ``rows`` runs, as an attention or knock-out network records them (0: no model
    pass); a knock-out run's count depends on its group's regulators."""
    accumulates = get_method(opts.method).accumulates
    if accumulates == "knockout":
        return len(knockout_collators(bundle, plan, opts, knockout_regulators(plan, opts, rows)))
    return len(network_collators(bundle, plan, opts)) if accumulates else 0


def iter_networks(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, dev: torch.device, names: Sequence[str],
                  progress: bool = True) -> Iterator[tuple[str, AnnData]]:
    """(name, network) of the named groups, one after the other, each yielded as soon as it is done (so a
    caller can save it before the next one starts)."""
    method = get_method(opts.method)
    slot_of, collators = gene_slots(bundle, plan, dev), network_collators(bundle, plan, opts)
    for name in names:
        rows = plan.groups[name]
        if method.accumulates == "knockout":
            yield name, knockout_network(bundle, plan, opts, dev, name, rows)
            continue
        acc = new_accumulator(bundle, len(plan.cols), opts, dev)
        if acc is None:
            yield name, form_network(bundle, plan, opts, name, rows, None, 0, dev=dev)
            continue
        for _, _, batch, out in run_model(bundle, plan.prep, rows, collators, dev, batch_size=opts.batch_size,
                                          precision=opts.precision, return_qk=True, progress=progress,
                                          desc="grn" if name == "all" else f"grn {name}", sharded=True):
            acc.add(slot_of[batch["genes"]], out.qk, same_context=not opts.random_contexts)
        combine_sums(acc)
        yield name, form_network(bundle, plan, opts, name, rows, acc, len(collators), dev=dev)


def networks_in_one_pass(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, dev: torch.device,
                         include_all: bool = False, progress: bool = True) -> dict[str, AnnData]:
    """Every group's network from one pass over their cells (see `grn`); with ``include_all`` also 'all', the
    sum of every accumulator, the cells in no group included. With opts.contrast each group's network is its
    own minus that all-cells one. A method that reads no attention has no pass to share: each network runs on
    its own, 'all' over every planned cell."""
    if not get_method(opts.method).reads_attention:
        if include_all:
            plan = dataclasses.replace(plan, groups={**plan.groups, "all": plan.everyone()})
        return dict(iter_networks(bundle, plan, opts, dev, list(plan.groups), progress))
    whole = include_all or opts.contrast
    sets = {**plan.groups, **({"": plan.rest} if whole else {})}  # "": the cells in no group
    label = np.full(plan.prep.n_cells, -1)
    for i, rows in enumerate(sets.values()):
        label[rows] = i
    everyone = np.flatnonzero(label >= 0)
    slot_of, collators = gene_slots(bundle, plan, dev), network_collators(bundle, plan, opts)
    accs = [new_accumulator(bundle, len(plan.cols), opts, dev) for _ in sets]
    for batch_rows, _, batch, out in run_model(bundle, plan.prep, everyone, collators, dev,
                                               batch_size=opts.batch_size, precision=opts.precision,
                                               return_qk=True, progress=progress, desc="grn, one pass",
                                               sharded=True):
        slots = slot_of[batch["genes"]]
        which = torch.as_tensor(label[batch_rows], device=dev)
        for i in torch.unique(which).tolist():
            mine = which == i
            accs[i].add(slots[mine], [(q[mine], k[mine]) for q, k in out.qk], same_context=not opts.random_contexts)
    for acc in accs:
        combine_sums(acc)
    total = None
    if whole:
        total = new_accumulator(bundle, len(plan.cols), opts, dev)
        for acc in accs:
            total.merge(acc)
    nets = {g: form_network(bundle, plan, opts, g, rows, acc, len(collators), total if opts.contrast else None, dev)
            for (g, rows), acc in zip(plan.groups.items(), accs)}
    if include_all:
        nets["all"] = form_network(bundle, plan, opts, "all", everyone, total, len(collators), dev=dev)
    return nets


def form_network(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, group: str, rows: np.ndarray,
                 acc: Accumulator | None, n_contexts: int, background: Accumulator | None = None,
                 dev: torch.device | None = None) -> AnnData:
    """The network AnnData of one group: the method's attention read-out (heads combined, less ``background``'s
    network for contrast) when it reads attention, formed by the method (`networks.methods`), symmetrised,
    its non-regulator rows zeroed and filtered as asked."""
    c = bundle.config
    method = get_method(opts.method)
    weights = opts.head_weights(bundle, dev or torch.device("cpu"))
    net, cube = aggregate(acc, weights, opts.direction, opts.keep_heads) if acc is not None else (None, None)
    if background is not None:
        net = net - aggregate(background, weights, opts.direction)[0]
    net = method.form(net, NetworkContext(bundle, plan, opts, rows, dev or torch.device("cpu")))
    if opts.symmetrise:
        net = (net + net.T) / 2
    net = plan.regulator_network(net, opts)
    n_seen = int((acc.n_cells > 0).sum()) if acc is not None else len(plan.cols)
    level = float(weights.sum()) / max(n_seen, 1) if method.attention_only and background is None else 0.0
    stable = stability(acc, weights, opts.direction, opts.top_k, opts.symmetrise) \
        if isinstance(acc, Bootstrapped) else None
    grn_matrix = filter_network(net, opts.filter, opts.top_k, level, stable, opts.min_stability)
    uns = {**provenance(bundle, plan.prep, opts, group, len(rows), n_contexts), "uniform_level": level}
    n_cells = acc.n_cells.cpu().numpy() if acc is not None else np.full(len(plan.cols), len(rows))
    cells = rows if plan.stream is None else rows[:0]  # a streamed network does not copy the atlas's counts
    out = network_adata(grn_matrix, plan.prep, plan.cols, cells, n_cells, uns, cube, c.n_layers, c.n_heads,
                        plan.regulators)
    if stable is not None:
        out.varp["GRN_stability"] = keep_regulator_rows(stable, plan.regulators)
    plan.mark_prior(out, opts)
    return out
