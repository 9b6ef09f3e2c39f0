"""Denoised expression: the expected counts the model predicts for each cell at a chosen sequencing depth.

The model was pre-trained to reconstruct a cell's full counts from a thinned copy when told the full depth. So
we feed the measured counts, tell it ``depth_multiplier`` × the cell's depth (depth token), and the ZINB head
gives μ, θ and the zero-inflation π, where μ shares out ``depth_multiplier`` × the counts the context holds. We
report the ZINB mean (1 − π)·μ — the expected *measured* count, zeros included — rather than μ alone, which
would describe a dropout-free assay the model was never trained against.

Contexts are bounded by the model's context length, as in pre-training. A cell's output genes — its expressed
genes (None/'all': zeros stay zero), or the listed genes ('hvg' with ``n_genes``, or a list of names: the
unexpressed ones get a value too, which is imputation) — are split into parts of at most
``max_listed_per_context`` genes (default: the context length for 'all', half of it for a list). Each part runs
in one context, filled up to the context length with other expressed genes of the same cell drawn at random:
those anchor the part's share of the cell's counts (a part the cell barely expresses would otherwise hold no
counts to share out). Cost is linear in the number of output genes, not quadratic in the cell's size.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

from grnformer.bundle.checkpoint import Bundle
from grnformer.data.collate import CellRecord, Collator
from grnformer.errors import InputError
from grnformer.inference.device import load_task_bundle
from grnformer.inference.distributed import combine_entries
from grnformer.inference.file_runner import run_file
from grnformer.inference.gene_sets import chunk_count, chunk_genes, parse_gene_option, select_genes
from grnformer.inference.loop import context_collator, run_model
from grnformer.inference.prepared import prepare_input
from grnformer.tasks.task_options import DenoiseOptions

LAYER = "grnformer_denoised"


def denoise(bundle: Bundle, adata: AnnData, options: DenoiseOptions | None = None, *,
            device: str | torch.device | None = None, progress: bool = True) -> sp.csr_matrix:
    """Write layers['grnformer_denoised'] (CSR, float32, aligned with ``adata``'s genes) and return it
    (``options``: see `DenoiseOptions`).

    Genes outside the chosen set, genes that did not map to the vocabulary and cells prepare() dropped are 0."""
    o = options or DenoiseOptions()
    depth_multiplier, genes, max_listed_per_context = o.depth_multiplier, o.genes, o.max_listed_per_context
    if not depth_multiplier > 0:
        raise InputError(f"depth_multiplier must be > 0; got {depth_multiplier}.")
    bundle, dev = load_task_bundle(bundle, device)
    L = bundle.config.context_length
    if max_listed_per_context is not None and not 1 <= max_listed_per_context < L:
        raise InputError(f"max_listed_per_context must be between 1 and {L - 1} (the context length minus one "
                         f"slot for the cell's own genes); got {max_listed_per_context}.")
    prep = prepare_input(bundle, adata, o.organism)
    everything = genes is None or (isinstance(genes, str) and genes == "all")
    if not everything and isinstance(genes, str) and genes != "hvg":
        raise InputError(f"genes must be None, 'all', 'hvg' or a list of gene names; got '{genes}'.")
    listed = None if everything else prep.tokens[select_genes(prep, genes, o.n_genes)]
    part_size = max_listed_per_context or (L if everything else max(1, L // 2))
    contexts = _PartContexts(context_collator(bundle, "all", seed=o.seed), L, part_size, listed, o.seed)
    n_parts = (np.full(prep.n_cells, len(contexts.parts)) if contexts.parts is not None
               else chunk_count(prep.expressed_per_cell(), part_size))
    col_of_token = torch.full((bundle.config.vocab_size,), -1, dtype=torch.long, device=dev)
    col_of_token[torch.as_tensor(prep.tokens, device=dev)] = torch.arange(len(prep.tokens), device=dev)
    parts_r, parts_c, parts_v = [], [], []
    for rows, _, batch, out in run_model(bundle, prep, np.arange(prep.n_cells), [contexts], dev, o.batch_size,
                                         o.precision, progress=progress, desc="denoise",
                                         depth_scale=depth_multiplier, contexts_per_row=n_parts, sharded=True):
        expected = (1 - torch.sigmoid(out.pi_logit.float())) * out.mu.float()
        cols_b = col_of_token[batch["genes"]]
        r, p = torch.nonzero(batch["output"] & (cols_b >= 0), as_tuple=True)
        parts_r.append(rows[batch["cell"][r].cpu().numpy()])
        parts_c.append(cols_b[r, p].cpu().numpy())
        parts_v.append(expected[r, p].cpu().numpy().astype(np.float32))
    r, c, v = combine_entries(*(np.concatenate(p) for p in (parts_r, parts_c, parts_v)), n_rows=prep.n_cells)
    values = sp.csr_matrix((v, (r, c)), shape=(prep.n_cells, prep.adata.n_vars), dtype=np.float32)
    layer = _to_user(values, prep.obs_rows, prep.user_var_columns(adata), adata.shape)
    adata.layers[LAYER] = layer
    adata.uns["grnformer_denoise"] = {"depth_multiplier": depth_multiplier,
                                      "genes": "all" if everything else genes if isinstance(genes, str) else "list",
                                      "genes_per_context": part_size, "context_length": L,
                                      "value": "ZINB mean (1 - pi) * mu"}
    return layer


class _PartContexts:
    """Collate cells into one context per part of their output genes, filled with anchor genes of the cell.

    Adds batch['cell'] (index of each row's cell in the records) and batch['output'] (positions whose values
    are reported), and sets batch['depth'] to the whole cell's library size, which the depth token describes."""

    def __init__(self, collator: Collator, context_length: int, part_size: int, listed: np.ndarray | None,
                 seed: int):
        self.collator, self.L, self.part_size = collator, context_length, part_size
        self.parts = None if listed is None else chunk_genes(listed, part_size)
        self.rng = np.random.default_rng(seed)

    def _cell_parts(self, record: CellRecord) -> list[np.ndarray]:
        if self.parts is not None:
            return self.parts
        return chunk_genes(self.rng.permutation(record.genes), self.part_size)

    def __call__(self, records: list[CellRecord]) -> dict[str, torch.Tensor]:
        sub, cell, parts = [], [], []
        for i, r in enumerate(records):
            for part in self._cell_parts(r):
                order = np.argsort(r.genes)
                slot = order[np.minimum(np.searchsorted(r.genes, part, sorter=order), len(order) - 1)]
                counts = np.where(r.genes[slot] == part, r.counts[slot], 0).astype(np.float32)
                others = np.flatnonzero(~np.isin(r.genes, part))
                n_anchor = min(len(others), self.L - len(part))
                anchors = self.rng.choice(others, n_anchor, replace=False) if n_anchor < len(others) else others
                sub.append(CellRecord(np.concatenate([part, r.genes[anchors]]),
                                      np.concatenate([counts, r.counts[anchors]]), r.labels, r.organism))
                cell.append(i)
                parts.append(part)
        batch = self.collator(sub)
        cell_t = torch.as_tensor(np.asarray(cell, dtype=np.int64))
        batch["depth"] = torch.as_tensor(np.fromiter((r.counts.sum() for r in records), np.float32,
                                                     len(records)))[cell_t]
        batch["cell"] = cell_t
        genes = batch["genes"].numpy()
        batch["output"] = torch.from_numpy(np.stack([np.isin(g, p) for g, p in zip(genes, parts)]))
        return batch


def _to_user(values: sp.csr_matrix, obs_rows: np.ndarray, var_cols: np.ndarray, shape: tuple[int, int]
             ) -> sp.csr_matrix:
    """Prepared cells × genes placed on the user's rows and columns through 0/1 selection matrices."""
    n_prep_cells, n_prep_genes = values.shape
    rows = sp.csr_matrix((np.ones(n_prep_cells, dtype=np.float32), (obs_rows, np.arange(n_prep_cells))),
                         shape=(shape[0], n_prep_cells))
    mapped = np.flatnonzero(var_cols >= 0)
    cols = sp.csr_matrix((np.ones(len(mapped), dtype=np.float32), (var_cols[mapped], mapped)),
                         shape=(n_prep_genes, shape[1]))
    return (rows @ values @ cols).tocsr().astype(np.float32)


def denoise_file(checkpoint: str | Path | Bundle, in_path: str | Path, out_path: str | Path,
                 options: DenoiseOptions | None = None, *, device: str | torch.device | None = None,
                 progress: bool = True) -> Path:
    """CLI entry: the input h5ad with layers['grnformer_denoised'] added, written atomically to ``out_path``."""
    options = options or DenoiseOptions()
    options = dataclasses.replace(options, genes=parse_gene_option(options.genes, ("all", "hvg")))
    return run_file(checkpoint, in_path, out_path,
                    lambda bundle, adata, dev: denoise(bundle, adata, options, device=dev, progress=progress),
                    device=device)
