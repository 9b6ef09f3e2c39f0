"""Gene networks read from the model's attention, for all cells or one per group of cells.

Method ('mean_qk', the default). Every cell is run with the network genes as its context. For each layer and
head we keep running sums of each gene's query and key vectors and the number of cells that had the gene in
context, so memory is O(layers × heads × genes × d_head) whatever the number of cells: per-cell G × G maps are
never held. At the end, per head, Q̄ = sum / count and K̄ likewise, and the head's map is softmax(Q̄ K̄ᵀ / √d_head)
over the keys (row i = how query gene i attends to every key gene). Heads are then averaged, or combined with
the non-negative weights of a head selection (`tasks.heads`).

Direction. Attention row i mixes the values of the key genes j into gene i's output, so information flows from
key to query. 'kq' (the default) transposes each head's map so that rows are keys: row j = the genes that read
from gene j, i.e. rows are regulators in the information-flow sense (the reference model also transposes before
scoring). 'qk' keeps rows = queries. Which one matches regulation better is measured by the benchmark, not
assumed; both are one option away.

Gene sets larger than the model's context are split into near-equal contexts that each cell runs through in
turn; a gene's vectors are still averaged over cells, and Q̄ K̄ᵀ is formed across chunks (genes of different
chunks never attended to each other in a forward pass, but their averaged vectors live in the same space).
With genes='random_expressed' (genome-wide) each cell's context is drawn among its own expressed genes, and a
network gene's vectors are averaged over the cells whose context drew it (`var['n_cells']`).

'per_cell' averages the true per-cell attention maps softmax(q kᵀ / √d_head) over cells instead — exact but
O(cells × G²) work, so only for gene sets that fit one context. With a single cell both methods coincide.

Groups (one network per value of an obs column) run one after the other, or in one pass over all their cells
with each batch row feeding its own group's accumulator; that pass can also yield the all-cells network (the sum
of the accumulators, plus the cells in no group) at no extra model cost. `grn_file` writes each group's files
as soon as the group is done and, run again, skips the groups whose files were made with the same settings
(uns['grn'] records them), so a long run over many cell types can be interrupted and resumed.

Post-processing, in this order: optional symmetrisation ((A + Aᵀ) / 2), then a filter: 'topk' keeps each
regulator's k strongest targets; 'above_uniform' keeps scores above what a uniformly attending head would give
(1 / number of genes per unit of head weight, i.e. 1/G for the mean), the level every softmax row averages to.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from anndata.io import read_elem
from torch import Tensor

import grnformer
from grnformer.data.collate import Collator
from grnformer.data.genes import tf_symbols
from grnformer.errors import InputError
from grnformer.tasks.heads import (
    HeadSelection, check_split, head_names, load_heads, read_edge_list, select_heads_from_network,
)
from grnformer.tasks.inference import (
    DEFAULT_BATCH_SIZE, GENE_SETS, MAX_MISSING_GENES, PRECISIONS, Prepared, cells_in_groups, chunk_genes,
    context_collator, load_task_bundle, parse_gene_option, prepare_input, read_input, run_model, select_genes,
)
from grnformer.tasks.io import check_writable, csv_writer, h5ad_writer, write_many
from grnformer.train.checkpoint import Bundle

DIRECTIONS = ("kq", "qk")
FILTERS = ("none", "topk", "above_uniform")
METHODS = ("mean_qk", "per_cell")
DEFAULT_N_GENES = 2000


# ---------------------------------------------------------------------------------------------- accumulators

class MeanQK:
    """Running sums of each network gene's q and k per layer and head, and its count of cells in context.

    Sizes depend on layers, heads, genes and d_head only — never on the number of cells."""

    def __init__(self, n_layers: int, n_heads: int, d_head: int, n_genes: int, device: torch.device):
        self.q_sum = torch.zeros(n_layers, n_heads, n_genes, d_head, device=device)
        self.k_sum = torch.zeros_like(self.q_sum)
        self.n_cells = torch.zeros(n_genes, dtype=torch.float64, device=device)

    @property
    def n_genes(self) -> int:
        return self.q_sum.shape[2]

    def add(self, slots: Tensor, qk: Sequence[tuple[Tensor, Tensor]], same_context: bool) -> None:
        """slots [B, L]: network-gene index of each context position (-1 = not a network gene).

        same_context: every row holds the same genes in the same order (a given gene list), so the batch can
        be summed before scattering."""
        if same_context:
            idx = slots[0]
            keep = idx >= 0
            idx = idx[keep]
            for layer, (q, k) in enumerate(qk):
                self.q_sum[layer].index_add_(1, idx, q.sum(0, dtype=torch.float32)[:, keep])
                self.k_sum[layer].index_add_(1, idx, k.sum(0, dtype=torch.float32)[:, keep])
            self.n_cells.index_add_(0, idx, torch.full(idx.shape, float(slots.shape[0]), dtype=torch.float64,
                                                        device=idx.device))
            return
        keep = slots >= 0
        idx = slots[keep]
        for layer, (q, k) in enumerate(qk):
            self.q_sum[layer].index_add_(1, idx, q.permute(1, 0, 2, 3)[:, keep].float())
            self.k_sum[layer].index_add_(1, idx, k.permute(1, 0, 2, 3)[:, keep].float())
        self.n_cells.index_add_(0, idx, torch.ones(idx.shape, dtype=torch.float64, device=idx.device))

    def merge(self, other: MeanQK) -> None:
        """Add another accumulator's cells (sums are additive: a union of groups is the sum of its groups)."""
        self.q_sum += other.q_sum
        self.k_sum += other.k_sum
        self.n_cells += other.n_cells

    def head_maps(self, layer: int) -> Tensor:
        """[H, G, G] softmax(Q̄ K̄ᵀ / √d_head) over the genes seen in at least one cell (others: zero)."""
        seen = torch.nonzero(self.n_cells > 0).squeeze(1)
        n = self.n_cells[seen].float()[None, :, None]
        q = self.q_sum[layer][:, seen] / n
        k = self.k_sum[layer][:, seen] / n
        maps = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        if len(seen) == self.n_genes:
            return maps
        out = torch.zeros(maps.shape[0], self.n_genes, self.n_genes, device=maps.device)
        out[:, seen[:, None], seen[None, :]] = maps
        return out


class MeanAttention:
    """Sum over cells of each cell's true attention among the network genes, per layer and head (O(G²))."""

    def __init__(self, n_layers: int, n_heads: int, n_genes: int, device: torch.device):
        self.sums = torch.zeros(n_layers, n_heads, n_genes, n_genes, device=device)
        self.n_cells = torch.zeros(n_genes, dtype=torch.float64, device=device)

    @property
    def n_genes(self) -> int:
        return self.sums.shape[-1]

    def add(self, slots: Tensor, qk: Sequence[tuple[Tensor, Tensor]], same_context: bool) -> None:
        if not same_context or not torch.equal(slots[0], torch.arange(self.n_genes, device=slots.device)):
            raise InputError("per-cell attention needs every network gene in one shared context.")
        for layer, (q, k) in enumerate(qk):
            scores = q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
            self.sums[layer] += torch.softmax(scores, dim=-1).sum(0)
        self.n_cells += slots.shape[0]

    def merge(self, other: MeanAttention) -> None:
        self.sums += other.sums
        self.n_cells += other.n_cells

    def head_maps(self, layer: int) -> Tensor:
        return self.sums[layer] / self.n_cells.clamp_min(1).float()[None, :, None]


Accumulator = MeanQK | MeanAttention


def aggregate(acc: Accumulator, weights: Tensor, direction: str = "kq", keep_heads: bool = False
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """Weighted sum of the heads' maps ([n_layers, n_heads] weights), rows = regulators per ``direction``.

    Returns the [G, G] network and, with ``keep_heads``, the [n_layers·n_heads, G, G] cube of per-head maps in
    the same orientation. Layers whose weights are all zero are skipped unless the cube is kept."""
    G = acc.n_genes
    net = torch.zeros(G, G, device=weights.device)
    cube = []
    for layer in range(weights.shape[0]):
        w = weights[layer]
        if not keep_heads and not bool((w != 0).any()):
            continue
        maps = acc.head_maps(layer)
        if direction == "kq":
            maps = maps.transpose(1, 2)
        net += torch.tensordot(w.to(maps.dtype), maps, dims=1)
        if keep_heads:
            cube.append(maps.cpu().numpy())
    return net.cpu().numpy(), (np.concatenate(cube).astype(np.float32) if keep_heads else None)


def filter_network(net: np.ndarray, how: str = "none", top_k: int = 20, uniform_level: float | None = None
                   ) -> np.ndarray | sp.csr_matrix:
    """'none' keeps the dense matrix; 'topk' the k strongest targets per regulator row; 'above_uniform'
    scores strictly above ``uniform_level``. Filtered networks come back as CSR."""
    if how == "none":
        return net
    if how == "topk":
        k = min(top_k, net.shape[1])
        cols = np.argpartition(-net, k - 1, axis=1)[:, :k]
        rows = np.repeat(np.arange(net.shape[0]), k)
        vals = net[rows, cols.ravel()]
        return sp.csr_matrix((vals, (rows, cols.ravel())), shape=net.shape, dtype=np.float32)
    if how == "above_uniform":
        return sp.csr_matrix(np.where(net > uniform_level, net, 0), dtype=np.float32)
    raise InputError(f"filter must be one of {', '.join(FILTERS)}; got '{how}'.")


# ----------------------------------------------------------------------------------------------- options

@dataclass
class GRNOptions:
    """Validated options of one grn() call (see `grn` for meanings)."""

    genes: Sequence[str] | str = "hvg"
    n_genes: int | None = DEFAULT_N_GENES
    groupby: str | None = None
    groups: Sequence[str] | None = None
    heads: str | Path | HeadSelection | Mapping | None = None
    direction: str | None = None
    filter: str = "none"
    top_k: int = 20
    symmetrise: bool = False
    keep_heads: bool = False
    method: str = "mean_qk"
    max_cells: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    precision: str = "auto"
    seed: int = 0
    max_missing: float = MAX_MISSING_GENES
    selection: HeadSelection | None = field(default=None, repr=False)

    @property
    def random_contexts(self) -> bool:
        """Genome-wide mode: each cell's context drawn among its expressed genes, not the network genes."""
        return isinstance(self.genes, str) and self.genes == "random_expressed"

    def validate(self, bundle: Bundle) -> None:
        c = bundle.config
        if self.method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}; got '{self.method}'.")
        if self.filter not in FILTERS:
            raise InputError(f"filter must be one of {', '.join(FILTERS)}; got '{self.filter}'.")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise InputError(f"direction must be 'kq' (rows = keys) or 'qk' (rows = queries); got "
                             f"'{self.direction}'.")
        if self.filter == "topk" and self.top_k < 1:
            raise InputError(f"top_k must be >= 1 (got {self.top_k}).")
        if self.max_cells is not None and self.max_cells < 1:
            raise InputError(f"max_cells must be >= 1 (got {self.max_cells}).")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1 (got {self.batch_size}).")
        if self.seed < 0:
            raise InputError(f"seed must be >= 0 (got {self.seed}).")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}; got '{self.precision}'.")
        if self.heads is not None and not (isinstance(self.heads, str) and self.heads == "mean"):
            self.selection = self.heads if isinstance(self.heads, HeadSelection) else load_heads(self.heads)
            if (self.selection.n_layers, self.selection.n_heads) != (c.n_layers, c.n_heads):
                raise InputError(f"the head selection is for {self.selection.n_layers} layers × "
                                 f"{self.selection.n_heads} heads; this model has {c.n_layers} × {c.n_heads}.")
            if self.direction is not None and self.direction != self.selection.direction:
                raise InputError(f"the head selection was fitted with direction '{self.selection.direction}' "
                                 f"but direction '{self.direction}' was asked for.")
            self.direction = self.selection.direction
        self.direction = self.direction or "kq"
        if self.method == "per_cell" and self.random_contexts:
            raise InputError("method 'per_cell' needs one shared context: give a gene list, 'hvg' or "
                             "'most_expressed', not 'random_expressed'.")

    def head_weights(self, bundle: Bundle, device: torch.device) -> Tensor:
        c = bundle.config
        if self.selection is None:
            return torch.full((c.n_layers, c.n_heads), 1.0 / (c.n_layers * c.n_heads), device=device)
        return torch.as_tensor(self.selection.weights, dtype=torch.float32, device=device)


# -------------------------------------------------------------------------------------------------- grn

@dataclass
class NetworkPlan:
    """What a run computes, fixed before the model runs: the prepared cells, the network genes (prepared
    columns), each network's cells (prepared rows, after max_cells) and the cells in no group."""

    prep: Prepared
    cols: np.ndarray
    groups: dict[str, np.ndarray]
    rest: np.ndarray


def plan_networks(bundle: Bundle, adata: AnnData, opts: GRNOptions, organism: str | None = None) -> NetworkPlan:
    """Validate the data and choose genes and cells (InputError before any model run).

    Each group is subsampled on its own (a fresh generator from ``seed``), so a group's cells do not depend on
    which other groups run — a resumed run draws the cells the first run drew."""
    prep = prepare_input(bundle, adata, organism)
    cols = select_genes(prep, opts.genes, opts.n_genes, opts.max_missing)
    if opts.method == "per_cell" and len(cols) > bundle.config.context_length:
        raise InputError(f"method 'per_cell' handles gene sets up to the context length "
                         f"({bundle.config.context_length}); got {len(cols)} genes. Use 'mean_qk'.")
    groups = cells_in_groups(prep, opts.groupby, opts.groups)
    rest = np.setdiff1d(np.arange(prep.n_cells), np.concatenate([np.empty(0, np.int64), *groups.values()]))
    return NetworkPlan(prep, cols, {g: _subsample(r, opts.max_cells, opts.seed) for g, r in groups.items()},
                       _subsample(rest, opts.max_cells, opts.seed))


def _subsample(rows: np.ndarray, max_cells: int | None, seed: int) -> np.ndarray:
    if max_cells is None or len(rows) <= max_cells:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, max_cells, replace=False))


def grn(bundle: Bundle, adata: AnnData, genes: Sequence[str] | str = "hvg", n_genes: int | None = DEFAULT_N_GENES,
        groupby: str | None = None, groups: Sequence[str] | None = None,
        heads: str | Path | HeadSelection | Mapping | None = None, direction: str | None = None,
        filter: str = "none", top_k: int = 20, symmetrise: bool = False, keep_heads: bool = False,
        method: str = "mean_qk", max_cells: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
        device: str | torch.device | None = None, precision: str = "auto", organism: str | None = None,
        seed: int = 0, one_pass: bool = False, include_all: bool = False, progress: bool = True,
        max_missing: float = MAX_MISSING_GENES) -> AnnData | dict[str, AnnData]:
    """Gene network(s) of ``adata``'s cells from the model's attention.

    genes: a list of names (Ensembl IDs or symbols), or 'hvg' / 'most_expressed' / 'random_expressed' with
    ``n_genes`` (chosen once over all cells, so per-group networks share genes). groupby: obs column, one network
    per group (``groups`` restricts and orders them). heads: None/'mean' averages all heads; a head-selection JSON
    path, dict or HeadSelection weights them. direction: 'kq' (rows = keys, default) or 'qk'. filter: 'none',
    'topk' (``top_k`` per regulator) or 'above_uniform'. keep_heads: also store the per-head cube in
    uns['grn_heads'] (names in uns['grn_head_names']). max_cells: per network, at most this many cells drawn at
    random (``seed``). max_missing: share of a gene list that may be missing from the data (they are left out
    with a warning and listed in uns['grn']['genes_not_found']); more is an InputError.

    Groups run one after the other by default. one_pass: a single pass over the union of the groups' cells,
    each batch row feeding its group's accumulator (one accumulator per group in memory: with 'per_cell' that
    is G² per layer and head and group). include_all (implies one_pass): also the network of every cell under
    key 'all' — the groups' cells plus the cells in no listed group (with max_cells, at most that many of
    those) — from the same pass. Given gene sets give the same networks either way; 'random_expressed' draws
    other contexts when cells are batched differently.

    Returns one AnnData (varp['GRN'], rows = regulators; var['is_tf'], var['gene_id'], var['n_cells']; X = the
    cells' counts of the network genes; uns['grn'] = method and options), or {group: AnnData} with groupby."""
    opts = GRNOptions(genes=genes, n_genes=n_genes, groupby=groupby, groups=groups, heads=heads,
                      direction=direction, filter=filter, top_k=top_k, symmetrise=symmetrise,
                      keep_heads=keep_heads, method=method, max_cells=max_cells, batch_size=batch_size,
                      precision=precision, seed=seed, max_missing=max_missing)
    bundle, dev = load_task_bundle(bundle, device)
    opts.validate(bundle)
    if include_all and groupby is None:
        raise InputError("include_all adds the all-cells network to per-group ones: it needs groupby.")
    plan = plan_networks(bundle, adata, opts, organism)
    if include_all and "all" in plan.groups:
        raise InputError(f"obs['{groupby}'] has a group named 'all', the key of the all-cells network; rename "
                         f"it or leave include_all off.")
    if one_pass or include_all:
        nets = networks_in_one_pass(bundle, plan, opts, dev, include_all, progress)
    else:
        nets = dict(iter_networks(bundle, plan, opts, dev, list(plan.groups), progress))
    return nets if opts.groupby is not None else nets["all"]


def _gene_slots(bundle: Bundle, plan: NetworkPlan, dev: torch.device) -> Tensor:
    """[vocab] network-gene index of every token (-1 = not a network gene)."""
    tokens = torch.as_tensor(plan.prep.tokens[plan.cols], device=dev)
    slot_of = torch.full((bundle.config.vocab_size,), -1, dtype=torch.long, device=dev)
    slot_of[tokens] = torch.arange(len(tokens), device=dev)
    return slot_of


def _collators(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions) -> list[Collator]:
    """One collator per context a cell runs: a random draw of its expressed genes, or each chunk of the genes."""
    if opts.random_contexts:
        return [context_collator(bundle, "random-expressed", seed=opts.seed)]
    return [context_collator(bundle, "given", chunk, seed=opts.seed)
            for chunk in chunk_genes(plan.prep.tokens[plan.cols], bundle.config.context_length)]


def _accumulator(bundle: Bundle, n_genes: int, opts: GRNOptions, dev: torch.device) -> Accumulator:
    c = bundle.config
    if opts.method == "mean_qk":
        return MeanQK(c.n_layers, c.n_heads, c.d_head, n_genes, dev)
    return MeanAttention(c.n_layers, c.n_heads, n_genes, dev)


def iter_networks(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, dev: torch.device, names: Sequence[str],
                  progress: bool = True) -> Iterator[tuple[str, AnnData]]:
    """(name, network) of the named groups, one after the other, each yielded as soon as it is done (so a
    caller can save it before the next one starts)."""
    slot_of, collators = _gene_slots(bundle, plan, dev), _collators(bundle, plan, opts)
    for name in names:
        rows = plan.groups[name]
        acc = _accumulator(bundle, len(plan.cols), opts, dev)
        for _, _, batch, out in run_model(bundle, plan.prep, rows, collators, dev, batch_size=opts.batch_size,
                                          precision=opts.precision, return_qk=True, progress=progress,
                                          desc="grn" if name == "all" else f"grn {name}"):
            acc.add(slot_of[batch["genes"]], out.qk, same_context=not opts.random_contexts)
        yield name, _network(bundle, plan, opts, name, rows, acc, len(collators))


def networks_in_one_pass(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, dev: torch.device,
                         include_all: bool = False, progress: bool = True) -> dict[str, AnnData]:
    """Every group's network from one pass over their cells (see `grn`); with ``include_all`` also 'all', the
    sum of every accumulator, the cells in no group included."""
    sets = {**plan.groups, **({"": plan.rest} if include_all else {})}  # "": the cells in no group
    label = np.full(plan.prep.n_cells, -1)
    for i, rows in enumerate(sets.values()):
        label[rows] = i
    everyone = np.flatnonzero(label >= 0)
    slot_of, collators = _gene_slots(bundle, plan, dev), _collators(bundle, plan, opts)
    accs = [_accumulator(bundle, len(plan.cols), opts, dev) for _ in sets]
    for batch_rows, _, batch, out in run_model(bundle, plan.prep, everyone, collators, dev,
                                               batch_size=opts.batch_size, precision=opts.precision,
                                               return_qk=True, progress=progress, desc="grn, one pass"):
        slots = slot_of[batch["genes"]]
        which = torch.as_tensor(label[batch_rows], device=dev)
        for i in torch.unique(which).tolist():
            mine = which == i
            accs[i].add(slots[mine], [(q[mine], k[mine]) for q, k in out.qk], same_context=not opts.random_contexts)
    nets = {g: _network(bundle, plan, opts, g, rows, acc, len(collators))
            for (g, rows), acc in zip(plan.groups.items(), accs)}
    if include_all:
        total = _accumulator(bundle, len(plan.cols), opts, dev)
        for acc in accs:
            total.merge(acc)
        nets["all"] = _network(bundle, plan, opts, "all", everyone, total, len(collators))
    return nets


def _network(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, group: str, rows: np.ndarray,
             acc: Accumulator, n_contexts: int) -> AnnData:
    """The network AnnData of one accumulator: heads combined, symmetrised and filtered as asked."""
    c = bundle.config
    weights = opts.head_weights(bundle, acc.n_cells.device)
    net, cube = aggregate(acc, weights, opts.direction, opts.keep_heads)
    if opts.symmetrise:
        net = (net + net.T) / 2
    n_seen = int((acc.n_cells > 0).sum())
    level = float(weights.sum()) / max(n_seen, 1)
    grn_matrix = filter_network(net, opts.filter, opts.top_k, level)
    uns = {**_provenance(bundle, plan.prep, opts, group, len(rows), n_contexts), "uniform_level": level}
    return network_adata(grn_matrix, plan.prep, plan.cols, rows, acc.n_cells.cpu().numpy(), uns, cube,
                         c.n_layers, c.n_heads)


def _provenance(bundle: Bundle, prep: Prepared, opts: GRNOptions, group: str, n_cells: int, n_contexts: int
                ) -> dict[str, Any]:
    """uns['grn'] of a network, less its uniform level (a result): what a resumed run compares (RESUME_KEYS)."""
    heads = "mean" if opts.selection is None else opts.selection.named_weights()
    return {
        "method": opts.method, "direction": opts.direction,
        "rows": "keys (regulators whose values the targets read)" if opts.direction == "kq" else "queries",
        "heads": heads, "filter": opts.filter, "top_k": opts.top_k if opts.filter == "topk" else None,
        "symmetrise": opts.symmetrise, "keep_heads": opts.keep_heads,
        "genes": opts.genes if isinstance(opts.genes, str) else "list", "n_genes": opts.n_genes,
        "genes_not_found": list(prep.genes_not_found),
        "groupby": opts.groupby, "group": group, "n_cells": n_cells, "max_cells": opts.max_cells,
        "n_contexts_per_cell": n_contexts, "context_length": bundle.config.context_length,
        "precision": opts.precision, "seed": opts.seed, "organism": prep.organism,
        "model": {k: bundle.config.to_dict()[k] for k in ("d_model", "n_layers", "n_heads", "context_length")},
        "grnformer_version": grnformer.__version__,
    }


def network_adata(grn_matrix: np.ndarray | sp.csr_matrix, prep: Prepared, cols: np.ndarray, rows: np.ndarray,
                  n_cells: np.ndarray, uns: dict[str, Any], cube: np.ndarray | None = None,
                  n_layers: int = 0, n_heads: int = 0) -> AnnData:
    """The network as an AnnData readable by plain anndata (and GRnnData): var_names = symbols."""
    var = prep.adata.var.iloc[cols]
    gene_id = var.index.to_numpy().astype(str)
    symbol = var["symbol"].astype(object).where(var["symbol"].notna() & (var["symbol"].astype(str) != ""))
    names = pd.Series(np.where(symbol.isna(), gene_id, symbol.astype(str)))
    dup = names.duplicated(keep=False).to_numpy()
    names[dup] = names[dup] + "_" + gene_id[dup]
    tfs = tf_symbols(prep.organism)
    out_var = pd.DataFrame({"gene_id": gene_id, "symbol": var["symbol"].astype(str).to_numpy(),
                            "is_tf": np.isin(var["symbol"].astype(str).to_numpy(), list(tfs)),
                            "n_cells": n_cells.astype(np.int64)}, index=pd.Index(names.to_numpy(), name="gene"))
    x = prep.adata.X[rows][:, cols]
    net = AnnData(X=sp.csr_matrix(x, dtype=np.float32), obs=prep.adata.obs.iloc[rows].copy(), var=out_var)
    net.varp["GRN"] = grn_matrix.astype(np.float32) if isinstance(grn_matrix, np.ndarray) else grn_matrix
    net.uns["grn"] = uns
    if cube is not None:
        net.uns["grn_heads"] = cube
        net.uns["grn_head_names"] = head_names(n_layers, n_heads)
    return net


# ------------------------------------------------------------------------------------------- benchmarks

@lru_cache(maxsize=2)
def _cached_bundle(checkpoint: str) -> Bundle:
    return load_task_bundle(checkpoint)[0]


def benchmark_method(adata: AnnData, genes: Sequence[str], regulators: Sequence[str] | None = None, *,
                     checkpoint: str | Path | Bundle, **options: Any) -> AnnData:
    """`grn` in the shape of a benchmark method, ``(adata, genes, regulators, **options) -> network``.

    The bench layer registers it (tasks never imports bench). Rows of genes outside ``regulators`` are zeroed:
    only they may regulate, as for the baselines. The checkpoint is loaded once per process."""
    bundle = checkpoint if isinstance(checkpoint, Bundle) else _cached_bundle(str(checkpoint))
    net = grn(bundle, adata, genes=list(genes), progress=False, **options)
    if regulators is not None:
        keep = np.isin(net.var["symbol"].to_numpy(), list(regulators)) | np.isin(net.var_names, list(regulators))
        grn_matrix = net.varp["GRN"]
        mask = sp.diags(keep.astype(np.float32))
        net.varp["GRN"] = (mask @ grn_matrix).astype(np.float32) if sp.issparse(grn_matrix) \
            else grn_matrix * keep[:, None].astype(np.float32)
        net.uns["grn"]["regulators"] = int(keep.sum())
    return net


# ------------------------------------------------------------------------------------------------- file

# What must agree for an existing network file to count as this run's output (uniform_level, a result, and
# the version are left out; the network genes are compared separately).
RESUME_KEYS = ("method", "direction", "heads", "filter", "top_k", "symmetrise", "keep_heads", "genes", "n_genes",
               "groupby", "group", "n_cells", "max_cells", "n_contexts_per_cell", "precision", "seed", "organism",
               "model")


def grn_file(checkpoint: str | Path | Bundle, in_path: str | Path, out: str | Path, csv: bool = False,
             csv_max_edges: int | None = None, overwrite: bool = False, device: str | torch.device | None = None,
             organism: str | None = None, progress: bool = True, **options: Any) -> list[Path]:
    """CLI entry: network(s) of an h5ad written as h5ad (+ edge CSV beside it with ``csv``).

    Without groupby, ``out`` is the network's h5ad path (or an existing directory, which gets network.h5ad);
    with groupby, a directory (created if missing) holding ``<group>.h5ad`` per group. Each network's files are
    written atomically as soon as it is done, so an interrupted run leaves only complete networks and the same
    command run again computes only the missing ones. An existing network made with other options, genes or
    cells is an InputError (before the model runs) unless ``overwrite``, which recomputes every network.
    ``options`` are those of `grn`. Returns the run's network files, kept or written."""
    out = Path(out)
    grouped = options.get("groupby") is not None
    _check_output(out, grouped)
    bundle, dev = load_task_bundle(checkpoint, device)
    if "genes" in options:
        options["genes"] = parse_gene_option(options["genes"], GENE_SETS)
    opts = GRNOptions(**options)
    opts.validate(bundle)
    plan = plan_networks(bundle, read_input(in_path), opts, organism)
    stems = _file_stems(list(plan.groups)) if grouped else {}
    bases = {g: out / stems[g] if grouped else (out / "network" if out.is_dir() else out.with_suffix(""))
             for g in plan.groups}
    files = {g: [b.with_name(b.name + ext) for ext in (".h5ad", ".csv")[:1 + csv]] for g, b in bases.items()}
    n_contexts = len(_collators(bundle, plan, opts))
    done = [] if overwrite else [
        g for g in plan.groups
        if _is_done(files[g], _provenance(bundle, plan.prep, opts, g, len(plan.groups[g]), n_contexts), plan)]
    if done and progress:
        print(f"kept {len(done)} network(s) already made with these settings: "
              f"{', '.join(files[g][0].name for g in done)}", file=sys.stderr)
    if grouped:
        out.mkdir(exist_ok=True)
    for g, net in iter_networks(bundle, plan, opts, dev, [g for g in plan.groups if g not in done], progress):
        writers = {files[g][0]: h5ad_writer(net)}
        if csv:
            writers[files[g][1]] = csv_writer(net, csv_max_edges)
        write_many(writers)
    return [path for g in plan.groups for path in files[g]]


def _check_output(out: Path, grouped: bool) -> None:
    if not grouped:
        check_writable(out / "network.h5ad" if out.is_dir() else out)
    elif out.exists() and not out.is_dir():
        raise InputError(f"with groupby, the output '{out}' must be a directory.")
    else:
        check_writable(out / "probe.h5ad" if out.is_dir() else out)


def _is_done(paths: list[Path], expected: dict[str, Any], plan: NetworkPlan) -> bool:
    """Whether a network's files all exist and its h5ad was made with ``expected`` provenance on the same
    network genes; an h5ad made otherwise is an InputError (a resumed run must not mix two settings)."""
    if not paths[0].exists():
        return False
    try:
        with h5py.File(paths[0], "r") as f:
            found, gene_ids = read_elem(f["uns/grn"]), read_elem(f["var"])["gene_id"].astype(str).tolist()
    except Exception as err:  # h5py and anndata raise many types for a file that is not a network
        raise InputError(f"'{paths[0]}' exists and is not a grnformer network ({type(err).__name__}: {err}); "
                         f"choose another output or pass --overwrite.") from err
    differ = [f"{k}: {_plain(found.get(k))} there, {_plain(expected[k])} now" for k in RESUME_KEYS
              if _plain(found.get(k)) != _plain(expected[k])]
    if gene_ids != plan.prep.adata.var_names[plan.cols].astype(str).tolist():
        differ.append("the network genes")
    if differ:
        raise InputError(f"'{paths[0]}' holds a network made with other settings ({'; '.join(differ)}); choose "
                         f"another output or pass --overwrite to recompute.")
    return all(p.exists() for p in paths[1:])


def _plain(value: Any) -> Any:
    """A provenance value as plain Python, as it reads back from h5ad (where None is stored as 'none')."""
    if value is None:
        return "none"
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _file_stems(groups: list[str]) -> dict[str, str]:
    """File-safe stem per group (CL:0000236 -> CL_0000236); groups that collide get a numeric suffix."""
    stems: dict[str, str] = {}
    used: set[str] = set()
    for g in groups:
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(g)).strip("_") or "group"
        base, i = stem, 1
        while stem in used:
            i += 1
            stem = f"{base}_{i}"
        used.add(stem)
        stems[g] = stem
    return stems


def select_heads_file(checkpoint: str | Path | Bundle, in_path: str | Path, truth_path: str | Path,
                      out_json: str | Path, split: str = "edges", train_fraction: float = 0.5, seed: int = 0,
                      **opts: Any) -> Path:
    """CLI entry: fit a head selection on an h5ad's network against an edge-list ground truth; write its JSON.

    ``opts`` choose the network as for `grn` (genes, n_genes, direction, max_cells, …; heads are all kept, no
    filter); ``seed`` draws both the cells (with max_cells) and the split. The JSON holds the weights and the
    held-out metrics; pass it to `grn(..., heads=FILE)` on other data. Options are checked before the model runs."""
    check_writable(out_json)
    check_split(split, train_fraction)
    truth = read_edge_list(truth_path)
    bundle, _ = load_task_bundle(checkpoint, opts.get("device"))
    if "genes" in opts:
        opts["genes"] = parse_gene_option(opts["genes"], GENE_SETS)
    clash = sorted({"keep_heads", "filter", "heads", "groupby", "symmetrise"} & set(opts))
    if clash:
        raise InputError(f"head selection uses the unfiltered per-head network; drop the options {clash}.")
    net = grn(bundle, read_input(in_path), keep_heads=True, seed=seed, **opts)
    selection = select_heads_from_network(net, truth, split=split, train_fraction=train_fraction, seed=seed)
    return selection.save(out_json)
