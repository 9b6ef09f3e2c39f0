"""The network maths: per-gene accumulators over cells, the heads' maps, their combination and filters.

'mean_qk' (`MeanQK`): per layer and head, running sums of each network gene's query and key vectors and the
number of cells that had the gene in context, so memory is O(layers × heads × genes × d_head) whatever the
number of cells: per-cell G × G maps are never held. A head's map is softmax(Q̄ K̄ᵀ / √d_head) over the keys
(row i = how query gene i attends to every key gene), Q̄ = sum / count and K̄ likewise.

'per_cell' (`MeanAttention`) averages the true per-cell maps softmax(q kᵀ / √d_head) instead — exact but
O(cells × G²) work, for gene sets that fit one context. With a single cell both coincide.

Direction. Attention row i mixes the values of the key genes j into gene i's output, so information flows from
key to query. 'kq' transposes each head's map so that rows are keys (row j = the genes that read from gene j:
rows are regulators in the information-flow sense); 'qk' keeps rows = queries.

Correction 'centre_q' subtracts, per layer and head, the mean query over the network genes before the
softmax; 'none' (the default) keeps the raw maps. Softmax over keys is blind to anything added to every key, but
not to what every query shares: Q̄ᵢ·K̄ⱼ = (Q̄ᵢ - q̄)·K̄ⱼ + q̄·K̄ⱼ, and the second term is a per-key bias the same for
every query. On the shipped model it is 76–81% of the logits' variance across keys (PBMC3k, Chen hESC, Semrau
mESC), so a few keys (LYZ, FTH1; JUNB on the demo's cells) are read by every gene and, rows being keys in 'kq',
become hub regulators; centring removes them (centring K would change nothing: a constant added to a softmax
row). The raw maps nonetheless score higher on protocol v2's development truths (robust AUPRC ratio 1.15 against
0.98, benchmarks/results/attention_settings.json), whose regulators differ in how many targets they have: the
default follows that choice. 'centre_q' remains an option where a hub read by every gene would hide what sets
one cell type's network apart from another's.

Confidence: with n_bootstrap > 0, `Bootstrapped` keeps Poisson-weighted replicates of the sums from the same
forward passes, and `stability` is the share of replicates in which an edge is among its regulator's top_k
targets. Filter 'stable' keeps edges with stability >= min_stability.

Filters: 'topk' keeps each regulator's k strongest targets; 'above_uniform' keeps scores above what a
uniformly attending head would give (1 / number of genes per unit of head weight), the level every softmax row
averages to. Nothing here reads files or knows about AnnData.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from grnformer.errors import InputError
from grnformer.networks.grn_options import FILTERS


class MeanQK:
    """Running sums of each network gene's q and k per layer and head, and its count of cells in context.

    Sizes depend on layers, heads, genes and d_head only — never on the number of cells."""

    def __init__(self, n_layers: int, n_heads: int, d_head: int, n_genes: int, device: torch.device,
                 centre_q: bool = False):
        self.centre_q = centre_q
        self.q_sum = torch.zeros(n_layers, n_heads, n_genes, d_head, device=device)
        self.k_sum = torch.zeros_like(self.q_sum)
        self.n_cells = torch.zeros(n_genes, dtype=torch.float64, device=device)

    @classmethod
    def from_sums(cls, q_sum: Tensor, k_sum: Tensor, n_cells: Tensor, centre_q: bool) -> MeanQK:
        """An accumulator holding given sums (e.g. the union of some blocks of cells, as diffnet permutes them)."""
        acc = cls.__new__(cls)
        acc.centre_q, acc.q_sum, acc.k_sum, acc.n_cells = centre_q, q_sum, k_sum, n_cells
        return acc

    @property
    def n_genes(self) -> int:
        return self.q_sum.shape[2]

    def add(self, slots: Tensor, qk: Sequence[tuple[Tensor, Tensor]], same_context: bool,
            weights: Tensor | None = None) -> None:
        """slots [B, L]: network-gene index of each context position (-1 = not a network gene).

        same_context: every row holds the same genes in the same order (a given gene list), so the batch can
        be summed before scattering. weights [B]: each cell counts this many times (bootstrap replicates)."""
        w = torch.ones(slots.shape[0], device=slots.device) if weights is None else weights.float()
        if same_context:
            idx = slots[0]
            keep = idx >= 0
            idx = idx[keep]
            for layer, (q, k) in enumerate(qk):
                self.q_sum[layer].index_add_(1, idx, torch.einsum("b,bhld->hld", w, q.float())[:, keep])
                self.k_sum[layer].index_add_(1, idx, torch.einsum("b,bhld->hld", w, k.float())[:, keep])
            self.n_cells.index_add_(0, idx, torch.full(idx.shape, float(w.sum()), dtype=torch.float64,
                                                        device=idx.device))
            return
        keep = slots >= 0
        idx = slots[keep]
        w_pos = w[:, None].expand(slots.shape)[keep]
        for layer, (q, k) in enumerate(qk):
            self.q_sum[layer].index_add_(1, idx, q.permute(1, 0, 2, 3)[:, keep].float() * w_pos[None, :, None])
            self.k_sum[layer].index_add_(1, idx, k.permute(1, 0, 2, 3)[:, keep].float() * w_pos[None, :, None])
        self.n_cells.index_add_(0, idx, w_pos.double())

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
        if self.centre_q:
            q = q - q.mean(dim=1, keepdim=True)
        maps = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        if len(seen) == self.n_genes:
            return maps
        out = torch.zeros(maps.shape[0], self.n_genes, self.n_genes, device=maps.device)
        out[:, seen[:, None], seen[None, :]] = maps
        return out


class MeanAttention:
    """Sum over cells of each cell's true attention among the network genes, per layer and head (O(G²))."""

    def __init__(self, n_layers: int, n_heads: int, n_genes: int, device: torch.device, centre_q: bool = False):
        self.centre_q = centre_q
        self.sums = torch.zeros(n_layers, n_heads, n_genes, n_genes, device=device)
        self.n_cells = torch.zeros(n_genes, dtype=torch.float64, device=device)

    @property
    def n_genes(self) -> int:
        return self.sums.shape[-1]

    def add(self, slots: Tensor, qk: Sequence[tuple[Tensor, Tensor]], same_context: bool) -> None:
        if not same_context or not torch.equal(slots[0], torch.arange(self.n_genes, device=slots.device)):
            raise InputError("per-cell attention needs every network gene in one shared context.")
        for layer, (q, k) in enumerate(qk):
            q = q.float() - q.float().mean(dim=-2, keepdim=True) if self.centre_q else q.float()
            scores = q @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
            self.sums[layer] += torch.softmax(scores, dim=-1).sum(0)
        self.n_cells += slots.shape[0]

    def merge(self, other: MeanAttention) -> None:
        self.sums += other.sums
        self.n_cells += other.n_cells

    def head_maps(self, layer: int) -> Tensor:
        return self.sums[layer] / self.n_cells.clamp_min(1).float()[None, :, None]


class Bootstrapped:
    """A MeanQK with ``n`` bootstrap replicates fed from the same forward passes: each replicate counts every
    cell a Poisson(1) number of times (the streaming bootstrap: no second pass, no per-cell storage)."""

    def __init__(self, make: Callable[[], MeanQK], n: int, seed: int):
        self.main, self.replicates = make(), [make() for _ in range(n)]
        self.generator = torch.Generator(device=self.main.q_sum.device).manual_seed(seed)

    @property
    def n_genes(self) -> int:
        return self.main.n_genes

    @property
    def n_cells(self) -> Tensor:
        return self.main.n_cells

    def add(self, slots: Tensor, qk: Sequence[tuple[Tensor, Tensor]], same_context: bool) -> None:
        self.main.add(slots, qk, same_context)
        ones = torch.ones(slots.shape[0], device=slots.device)
        for rep in self.replicates:
            rep.add(slots, qk, same_context, weights=torch.poisson(ones, generator=self.generator))

    def merge(self, other: Bootstrapped) -> None:
        self.main.merge(other.main)
        for mine, theirs in zip(self.replicates, other.replicates):
            mine.merge(theirs)

    def head_maps(self, layer: int) -> Tensor:
        return self.main.head_maps(layer)


def stability(acc: Bootstrapped, weights: Tensor, direction: str, top_k: int, symmetrise: bool) -> np.ndarray:
    """[G, G] share of bootstrap replicates in which each edge is among its regulator's ``top_k`` targets
    (self-pairs excluded)."""
    G = acc.n_genes
    k = min(top_k, G - 1)
    counts = np.zeros((G, G), dtype=np.float32)
    for rep in acc.replicates:
        net, _ = aggregate(rep, weights, direction)
        if symmetrise:
            net = (net + net.T) / 2
        np.fill_diagonal(net, -np.inf)
        top = np.argpartition(-net, k - 1, axis=1)[:, :k]
        counts[np.repeat(np.arange(G), k), top.ravel()] += 1
    return counts / max(len(acc.replicates), 1)


Accumulator = MeanQK | MeanAttention | Bootstrapped


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


def filter_network(net: np.ndarray, how: str = "none", top_k: int = 20, uniform_level: float | None = None,
                   stable: np.ndarray | None = None, min_stability: float = 0.5) -> np.ndarray | sp.csr_matrix:
    """'none' keeps the dense matrix; 'topk' the k strongest targets per regulator row; 'above_uniform'
    scores strictly above ``uniform_level``; 'stable' edges whose ``stable`` share >= ``min_stability``.
    Filtered networks come back as CSR."""
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
    if how == "stable":
        return sp.csr_matrix(np.where(stable >= min_stability, net, 0), dtype=np.float32)
    raise InputError(f"filter must be one of {', '.join(FILTERS)}; got '{how}'.")
