"""In-silico knock-out networks: how every gene's predicted expression moves when a regulator is set to zero.

For each regulator r and each chunk of cells that express it, one forward pass runs the cells with r's count
set to zero (the depth token loses r's counts too, as in a cell without r); a baseline pass runs them as
measured. The effect of r on target t in a cell is log(share_base[t]) - log(share_ko[t]), where share is the
ZINB mean of t over the summed means of the context genes other than r (the model's means share out the
context's counts, so shares are what a knock-out can move). Positive: removing r lowers t (r activates t);
negative: r represses t. Effects are averaged over the cells that express r (a knock-out of an absent gene
changes nothing). Cost: one baseline forward per chunk of cells plus one forward per regulator and chunk of
its expressing cells, per context. More network genes than one context: each context holds every knocked-out
regulator and a chunk of the other genes (`grn.knockout_collators`), so the cost grows with the chunks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from grnformer.bundle.checkpoint import Bundle
from grnformer.data.collate import Collator
from grnformer.inference.device import autocast
from grnformer.inference.prepared import Prepared

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
