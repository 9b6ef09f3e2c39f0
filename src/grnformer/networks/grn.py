"""Gene networks read from the model's attention, for all cells or one per group of cells: the user entry point.

`grn(bundle, adata, GRNOptions(...))` plans the run (genes, each network's cells), feeds the model's q/k into
the accumulators of `networks.attention` (the maths) and assembles each network as an AnnData. Files and resume
are `networks.files`; head selection from files is `networks.heads_file`; the benchmark adapter is
`bench.grnformer_method`.

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

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from torch import Tensor

import grnformer
from grnformer.bundle.checkpoint import Bundle
from grnformer.data.collate import Collator
from grnformer.data.genes import tf_symbols
from grnformer.data.input.expression import log_per_10k
from grnformer.data.input.gene_names import match_names
from grnformer.errors import InputError
from grnformer.inference.device import load_task_bundle
from grnformer.inference.distributed import combine_sums, current_shard
from grnformer.inference.gene_sets import chunk_genes, select_genes
from grnformer.inference.loop import context_collator, run_model
from grnformer.inference.prepared import Prepared, cells_in_groups, prepare_input
from grnformer.networks.attention import (
    Accumulator,
    Bootstrapped,
    MeanAttention,
    MeanQK,
    aggregate,
    filter_network,
    stability,
)
from grnformer.networks.grn_options import FUSION_COMPONENTS, GRNOptions
from grnformer.networks.heads import head_names
from grnformer.networks.methods import get_method
from grnformer.networks.perturb import choose_regulators, knockout_effects
from grnformer.networks.streaming_correlation import StreamedCells, streamed_cells

# -------------------------------------------------------------------------------------------------- grn

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
    return NetworkPlan(prep, cols, {g: _subsample(r, opts.max_cells, opts.seed) for g, r in groups.items()},
                       _subsample(rest, opts.max_cells, opts.seed), regulator_rows(prep, cols, opts.regulators))


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
    return NetworkPlan(head, cols, {"all": rows}, rows[:0], regulator_rows(head, cols, opts.regulators), stream)


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


def keep_regulator_rows(net: np.ndarray, regulators: np.ndarray) -> np.ndarray:
    """The network with the rows of genes that may not regulate set to zero."""
    return np.where(regulators[:, None], net, 0).astype(net.dtype, copy=False)


def _subsample(rows: np.ndarray, max_cells: int | None, seed: int) -> np.ndarray:
    if max_cells is None or len(rows) <= max_cells:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, max_cells, replace=False))


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
    compare each group's plain network with the others' for any method)."""
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
    if opts.method == "perturb":  # no accumulator to share: each network is its own knock-out run
        nets = dict(iter_networks(bundle, plan, opts, dev, list(plan.groups), progress))
        if opts.include_all:
            everyone = np.sort(np.concatenate([plan.rest, *plan.groups.values()]))
            nets["all"] = _perturb_network(bundle, plan, opts, dev, "all", everyone)
        return nets
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


def _gene_slots(bundle: Bundle, plan: NetworkPlan, dev: torch.device) -> Tensor:
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


def knockout_collators(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, regulators: np.ndarray
                       ) -> list[Collator]:
    """Contexts of a knock-out run: all network genes when they fit one context; otherwise each context holds
    every knocked-out regulator and a chunk of the other genes (a regulator and a target must share a context
    for the model to see the loss), so the cost is one pass per chunk and regulator."""
    L, tokens = opts.context(bundle), plan.prep.tokens[plan.cols]
    if len(tokens) <= L:
        return [context_collator(bundle, "given", tokens, context_length=L, seed=opts.seed)]
    if len(regulators) > L // 2:
        raise InputError(f"{len(regulators)} regulators to knock out do not leave room for targets in contexts of "
                         f"{L} genes; lower max_regulators to at most {L // 2}, or raise context_length.")
    others = np.setdiff1d(np.arange(len(tokens)), regulators)
    return [context_collator(bundle, "given", np.concatenate([tokens[regulators], tokens[chunk]]),
                             context_length=L, seed=opts.seed)
            for chunk in chunk_genes(others, L - len(regulators))]


def _accumulator(bundle: Bundle, n_genes: int, opts: GRNOptions, dev: torch.device) -> Accumulator | None:
    """The method's accumulator over cells (None: the method reads no attention, no forward pass is run)."""
    c = bundle.config
    kind = get_method(opts.method).accumulates
    if kind is None:
        return None
    if kind == "mean_qk":
        def make() -> MeanQK:
            return MeanQK(c.n_layers, c.n_heads, c.d_head, n_genes, dev, centre_q=opts.correction == "centre_q")
        if opts.n_bootstrap and current_shard() is not None:
            raise InputError("n_bootstrap draws one random stream over all cells and does not run over several "
                             "processes yet: run it in one process.")
        return Bootstrapped(make, opts.n_bootstrap, opts.seed) if opts.n_bootstrap else make()
    return MeanAttention(c.n_layers, c.n_heads, n_genes, dev, centre_q=opts.correction == "centre_q")


def iter_networks(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, dev: torch.device, names: Sequence[str],
                  progress: bool = True) -> Iterator[tuple[str, AnnData]]:
    """(name, network) of the named groups, one after the other, each yielded as soon as it is done (so a
    caller can save it before the next one starts)."""
    slot_of, collators = _gene_slots(bundle, plan, dev), network_collators(bundle, plan, opts)
    for name in names:
        rows = plan.groups[name]
        if opts.method == "perturb":
            yield name, _perturb_network(bundle, plan, opts, dev, name, rows)
            continue
        acc = _accumulator(bundle, len(plan.cols), opts, dev)
        if acc is None:
            yield name, _network(bundle, plan, opts, name, rows, None, 0, dev=dev)
            continue
        for _, _, batch, out in run_model(bundle, plan.prep, rows, collators, dev, batch_size=opts.batch_size,
                                          precision=opts.precision, return_qk=True, progress=progress,
                                          desc="grn" if name == "all" else f"grn {name}", sharded=True):
            acc.add(slot_of[batch["genes"]], out.qk, same_context=not opts.random_contexts)
        combine_sums(acc)
        yield name, _network(bundle, plan, opts, name, rows, acc, len(collators), dev=dev)


def networks_in_one_pass(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, dev: torch.device,
                         include_all: bool = False, progress: bool = True) -> dict[str, AnnData]:
    """Every group's network from one pass over their cells (see `grn`); with ``include_all`` also 'all', the
    sum of every accumulator, the cells in no group included. With opts.contrast each group's network is its
    own minus that all-cells one."""
    if get_method(opts.method).accumulates is None:  # no forward pass to share: each network on its own
        if include_all:
            everyone = np.sort(np.concatenate([plan.rest, *plan.groups.values()]))
            plan = dataclasses.replace(plan, groups={**plan.groups, "all": everyone})
        return dict(iter_networks(bundle, plan, opts, dev, list(plan.groups), progress))
    whole = include_all or opts.contrast
    sets = {**plan.groups, **({"": plan.rest} if whole else {})}  # "": the cells in no group
    label = np.full(plan.prep.n_cells, -1)
    for i, rows in enumerate(sets.values()):
        label[rows] = i
    everyone = np.flatnonzero(label >= 0)
    slot_of, collators = _gene_slots(bundle, plan, dev), network_collators(bundle, plan, opts)
    accs = [_accumulator(bundle, len(plan.cols), opts, dev) for _ in sets]
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
        total = _accumulator(bundle, len(plan.cols), opts, dev)
        for acc in accs:
            total.merge(acc)
    nets = {g: _network(bundle, plan, opts, g, rows, acc, len(collators), total if opts.contrast else None, dev)
            for (g, rows), acc in zip(plan.groups.items(), accs)}
    if include_all:
        nets["all"] = _network(bundle, plan, opts, "all", everyone, total, len(collators), dev=dev)
    return nets


def _specific_networks(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, dev: torch.device, progress: bool
                       ) -> dict[str, AnnData]:
    """Each group's network of what sets it apart (`networks.specificity`), formed from the plain networks (and
    for 'share' from every planned cell's expression), then post-processed as asked."""
    from grnformer.networks.specificity import specific_matrices

    nets = group_networks(bundle, plan, opts.plain(), dev, progress)
    everyone = np.sort(np.concatenate([plan.rest, *plan.groups.values()]))
    x = NetworkContext(bundle, plan, opts, everyone, dev).log_expression() if opts.specificity == "share" else None
    mats = specific_matrices(opts.specificity, {g: nets[g].varp["GRN"] for g in plan.groups},
                             {g: np.isin(everyone, rows) for g, rows in plan.groups.items()}, x, opts.method)
    for g, m in mats.items():
        m = keep_regulator_rows((m + m.T) / 2 if opts.symmetrise else m, plan.regulators)
        nets[g].varp["GRN"] = filter_network(m, opts.filter, opts.top_k, 0.0)
        nets[g].uns["grn"] = {**provenance(bundle, plan.prep, opts, g, len(plan.groups[g]),
                                           nets[g].uns["grn"]["n_contexts_per_cell"]), "uniform_level": 0.0}
    return nets


@dataclass
class NetworkContext:
    """What a method's ``form`` may read of one network: its cells, genes and the model (`networks.methods`)."""

    bundle: Bundle
    plan: NetworkPlan
    opts: GRNOptions
    rows: np.ndarray
    dev: torch.device

    @property
    def regulators(self) -> np.ndarray:
        return self.plan.regulators

    @property
    def fusion_weights(self) -> dict[str, float]:
        from grnformer.networks.from_data import parse_weights

        return parse_weights(self.opts.fusion_weights, FUSION_COMPONENTS)

    def log_expression(self) -> np.ndarray:
        """[cells, G] log1p(counts per 10,000) of the network genes (depth over all genes), as the baselines."""
        x = log_per_10k(self.plan.prep.adata.X[self.rows])
        return np.asarray(x[:, self.plan.cols].toarray(), dtype=np.float32)

    def correlation(self, kind: str) -> np.ndarray:
        """[G, G] |Pearson r| ('pearson') or |Spearman rho| ('spearman') of the cells' log expression
        (`from_data`), streamed from the file when the plan streams (`networks.streaming_correlation`)."""
        from grnformer.networks.from_data import abs_correlation, abs_spearman

        if self.plan.stream is not None:
            return self.plan.stream.abs_correlation(kind, self.rows, self.plan.cols)
        return (abs_spearman if kind == "spearman" else abs_correlation)(self.log_expression())

    def log_denoised(self) -> np.ndarray:
        """[cells, G] the model's denoised expression of the network genes, normalised and logged the same way."""
        from grnformer.tasks.denoise import denoise
        from grnformer.tasks.task_options import DenoiseOptions

        prep = self.plan.prep
        cells = prep.adata[self.rows].copy()
        genes = cells.var_names[self.plan.cols].tolist()
        values = denoise(self.bundle, cells, DenoiseOptions(genes=genes, batch_size=self.opts.batch_size,
                                                            precision=self.opts.precision, seed=self.opts.seed),
                         device=self.dev, progress=False)[:, self.plan.cols]
        depth = np.asarray(cells.X.sum(axis=1)).ravel()
        return np.log1p(values.toarray() * (1e4 / np.maximum(depth, 1))[:, None]).astype(np.float32)

    def gene_embeddings(self) -> np.ndarray:
        """[G, d] the model's identity vectors of the network genes (gene encoder, before any cell is seen)."""
        tokens = torch.as_tensor(self.plan.prep.tokens[self.plan.cols], device=self.dev)
        with torch.no_grad():
            return self.bundle.model.gene_encoder(tokens).float().cpu().numpy()


def _network(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, group: str, rows: np.ndarray,
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
    net = keep_regulator_rows(net, plan.regulators)
    n_seen = int((acc.n_cells > 0).sum()) if acc is not None else len(plan.cols)
    attention_only = method.name in ("mean_qk", "per_cell") and background is None
    level = float(weights.sum()) / max(n_seen, 1) if attention_only else 0.0  # 'above_uniform' reads it
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
    return out


def _perturb_network(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, dev: torch.device, group: str,
                     rows: np.ndarray) -> AnnData:
    """In-silico knock-out network (`networks.perturb`): varp['GRN'] = |mean effect|, varp['GRN_effect'] = the
    signed mean effect (positive: the regulator's loss lowers the target), rows = knocked-out regulators."""
    symbols = plan.prep.adata.var["symbol"].astype(str).to_numpy()[plan.cols]
    is_tf = np.isin(symbols, list(tf_symbols(plan.prep.organism)))
    regulators = choose_regulators(plan.prep, plan.cols, rows, is_tf, opts.max_regulators, plan.regulators)
    t0 = time.perf_counter()
    collators = knockout_collators(bundle, plan, opts, regulators)
    effect, n_expr, forwards = knockout_effects(
        bundle, plan.prep, rows, collators, _gene_slots(bundle, plan, dev),
        regulators, len(plan.cols), dev, opts.batch_size, opts.precision)
    seconds = time.perf_counter() - t0
    net = np.abs(effect)
    if opts.symmetrise:
        net = (net + net.T) / 2
    uns = {**provenance(bundle, plan.prep, opts, group, len(rows), len(collators)),
           "n_regulators": int(len(regulators)),
           "forwards": forwards, "seconds": seconds}
    out = network_adata(filter_network(keep_regulator_rows(net, plan.regulators), opts.filter, opts.top_k, 0.0),
                        plan.prep, plan.cols, rows, np.full(len(plan.cols), len(rows)), uns,
                        regulators=plan.regulators)
    out.varp["GRN_effect"] = effect
    out.var["n_cells_knocked_out"] = n_expr.astype(np.int64)
    return out


def provenance(bundle: Bundle, prep: Prepared, opts: GRNOptions, group: str, n_cells: int, n_contexts: int
                ) -> dict[str, Any]:
    """uns['grn'] of a network, less its uniform level (a result): what a resumed run compares (RESUME_KEYS)."""
    return {
        **opts.recorded(bundle),
        "rows": "knocked-out regulators" if opts.method == "perturb" else
        "keys (regulators whose values the targets read)" if opts.direction == "kq" else "queries",
        "genes_not_found": list(prep.genes_not_found), "group": group, "n_cells": n_cells,
        "n_contexts_per_cell": n_contexts, "organism": prep.organism,
        "model": {k: bundle.config.to_dict()[k] for k in ("d_model", "n_layers", "n_heads", "context_length")},
        "grnformer_version": grnformer.__version__,
    }


def network_names(prep: Prepared, cols: np.ndarray) -> pd.Series:
    """The network genes' names: symbols, the Ensembl ID where a symbol is missing, both where symbols repeat."""
    var = prep.adata.var.iloc[cols]
    gene_id = var.index.to_numpy().astype(str)
    symbol = var["symbol"].astype(object).where(var["symbol"].notna() & (var["symbol"].astype(str) != ""))
    names = pd.Series(np.where(symbol.isna(), gene_id, symbol.astype(str)))
    dup = names.duplicated(keep=False).to_numpy()
    names[dup] = names[dup] + "_" + gene_id[dup]
    return names


def network_adata(grn_matrix: np.ndarray | sp.csr_matrix, prep: Prepared, cols: np.ndarray, rows: np.ndarray,
                  n_cells: np.ndarray, uns: dict[str, Any], cube: np.ndarray | None = None,
                  n_layers: int = 0, n_heads: int = 0, regulators: np.ndarray | None = None) -> AnnData:
    """The network as an AnnData readable by plain anndata (and GRnnData): var_names = symbols."""
    var = prep.adata.var.iloc[cols]
    gene_id = var.index.to_numpy().astype(str)
    names = network_names(prep, cols)
    tfs = tf_symbols(prep.organism)
    out_var = pd.DataFrame({"gene_id": gene_id, "symbol": var["symbol"].astype(str).to_numpy(),
                            "is_tf": np.isin(var["symbol"].astype(str).to_numpy(), list(tfs)),
                            "is_regulator": np.ones(len(cols), dtype=bool) if regulators is None else regulators,
                            "n_cells": n_cells.astype(np.int64)}, index=pd.Index(names.to_numpy(), name="gene"))
    x = prep.adata.X[rows][:, cols]
    net = AnnData(X=sp.csr_matrix(x, dtype=np.float32), obs=prep.adata.obs.iloc[rows].copy(), var=out_var)
    net.varp["GRN"] = grn_matrix.astype(np.float32) if isinstance(grn_matrix, np.ndarray) else grn_matrix
    net.uns["grn"] = uns
    if cube is not None:
        net.uns["grn_heads"] = cube
        net.uns["grn_head_names"] = head_names(n_layers, n_heads)
    return net
