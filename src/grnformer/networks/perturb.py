"""In-silico knock-out networks: how every gene's predicted expression moves when a regulator is set to zero.

For each regulator r and each chunk of cells that express it, one forward pass runs the cells with r's count
set to zero (the depth token loses r's counts too, as in a cell without r); a baseline pass runs them as
measured. The effect of r on target t in a cell is log(share_base[t]) - log(share_ko[t]), where share is the
ZINB mean of t over the summed means of the context genes other than r (the model's means share out the
context's counts, so shares are what a knock-out can move). Positive: removing r lowers t (r activates t);
negative: r represses t. Effects are averaged over the cells that express r (a knock-out of an absent gene
changes nothing). Cost: one baseline forward per chunk of cells plus one forward per regulator and chunk of
its expressing cells, per context. More network genes than one context: each context holds every knocked-out
regulator and a chunk of the other genes (`knockout_collators`), so the cost grows with the chunks.
`knockout_network` is the method's whole run for one network: `networks.dispatch` calls it for 'perturb'.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
from anndata import AnnData

from grnformer.bundle.checkpoint import Bundle
from grnformer.data.collate import Collator
from grnformer.data.genes import tf_symbols
from grnformer.errors import InputError
from grnformer.inference.device import autocast
from grnformer.inference.gene_sets import chunk_genes
from grnformer.inference.loop import context_collator
from grnformer.inference.prepared import Prepared
from grnformer.networks.attention import filter_network
from grnformer.networks.grn_options import GRNOptions
from grnformer.networks.network_adata import network_adata, provenance
from grnformer.networks.network_plan import NetworkPlan, gene_slots, keep_regulator_rows

_EPS = 1e-8


def choose_regulators(prep: Prepared, cols: np.ndarray, rows: np.ndarray, is_tf: np.ndarray,
                      max_regulators: int | None, allowed: np.ndarray | None = None) -> np.ndarray:
    """Network-gene indices to knock out among the ``allowed`` ones (default: all): TFs first, then other genes,
    each by the number of cells expressing them (most first); at most ``max_regulators``; genes no cell
    expresses are never chosen."""
    expressing = np.asarray((prep.adata.X[rows][:, cols] > 0).sum(axis=0)).ravel()
    order = np.lexsort((-expressing, ~is_tf))
    order = order[expressing[order] > 0]
    if allowed is not None:
        order = order[allowed[order]]
    return order if max_regulators is None else order[:max_regulators]


def _shares(mu: torch.Tensor, drop: int | None = None) -> torch.Tensor:
    """log of each context gene's mean over the sum of the means (leaving out position ``drop``)."""
    mu = mu.float().clamp_min(_EPS)
    total = mu.sum(dim=-1, keepdim=True) - (mu[:, drop:drop + 1] if drop is not None else 0)
    return torch.log(mu) - torch.log(total)


def knockout_effects(bundle: Bundle, prep: Prepared, rows: np.ndarray, collators: Sequence[Collator],
                     slot_of: torch.Tensor, regulators: np.ndarray, n_genes: int, dev: torch.device,
                     batch_size: int, precision: str = "auto") -> tuple[np.ndarray, np.ndarray, int]:
    """([n_genes, n_genes] mean signed effects, rows = regulators (others zero); [n_genes] cells that expressed
    each regulator; number of forward passes). Each collator is one context ('given' genes, the same in every
    row); an edge's effect is averaged over the cells and contexts in which regulator and target met."""
    model = bundle.model.eval()
    effect = torch.zeros(n_genes, n_genes, dtype=torch.float64, device=dev)
    met = torch.zeros(n_genes, n_genes, dtype=torch.float64, device=dev)
    n_expr = torch.zeros(n_genes, dtype=torch.float64, device=dev)
    forwards = 0
    for start in range(0, len(rows), batch_size):
        records = prep.records(rows[start:start + batch_size])
        counted = torch.zeros(n_genes, dtype=torch.bool, device=dev)
        for collator in collators:
            batch = {k: v.to(dev) for k, v in collator(records).items()}
            slots = slot_of[batch["genes"][0]]          # same genes, same order in every row ('given')
            pos = torch.full((n_genes,), -1, dtype=torch.long, device=dev)
            pos[slots[slots >= 0]] = torch.nonzero(slots >= 0).squeeze(1)
            keep = slots >= 0
            with torch.inference_mode(), autocast(dev, precision, rounding_sensitive=True):
                base = model(batch["genes"], batch["counts"], batch["depth"], scale=batch["counts"].sum(-1)).mu
            forwards += 1
            for r in regulators:
                p = int(pos[r])
                cells = torch.nonzero(batch["counts"][:, p] > 0).squeeze(1) if p >= 0 else pos[:0]
                if len(cells) == 0:
                    continue
                counts = batch["counts"][cells].clone()
                removed = counts[:, p].clone()
                counts[:, p] = 0
                with torch.inference_mode(), autocast(dev, precision, rounding_sensitive=True):
                    ko = model(batch["genes"][cells], counts, batch["depth"][cells] - removed,
                               scale=counts.sum(-1)).mu
                forwards += 1
                delta = (_shares(base[cells], p) - _shares(ko, p)).double()      # [cells, L]
                delta[:, p] = 0
                effect[r].index_add_(0, slots[keep], delta[:, keep].sum(0))
                met[r].index_add_(0, slots[keep], torch.full((int(keep.sum()),), float(len(cells)),
                                                             dtype=torch.float64, device=dev))
                if not counted[r]:
                    n_expr[r] += len(cells)
                    counted[r] = True
    effect /= met.clamp_min(1)
    return effect.cpu().numpy().astype(np.float32), n_expr.cpu().numpy(), forwards


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


def knockout_regulators(plan: NetworkPlan, opts: GRNOptions, rows: np.ndarray) -> np.ndarray:
    """The regulators a group's knock-out run knocks out (they depend on its cells: most expressing first), which
    also set how many contexts each cell runs."""
    symbols = plan.prep.adata.var["symbol"].astype(str).to_numpy()[plan.cols]
    is_tf = np.isin(symbols, list(tf_symbols(plan.prep.organism)))
    return choose_regulators(plan.prep, plan.cols, rows, is_tf, opts.max_regulators, plan.regulators)


def knockout_network(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, dev: torch.device, group: str,
                     rows: np.ndarray) -> AnnData:
    """One network by knock-outs: varp['GRN'] = |mean effect|, varp['GRN_effect'] = the signed mean effect
    (positive: the regulator's loss lowers the target), rows = knocked-out regulators."""
    regulators = knockout_regulators(plan, opts, rows)
    t0 = time.perf_counter()
    collators = knockout_collators(bundle, plan, opts, regulators)
    effect, n_expr, forwards = knockout_effects(
        bundle, plan.prep, rows, collators, gene_slots(bundle, plan, dev),
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
