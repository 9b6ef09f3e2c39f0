"""Denoised expression: the expected counts the model predicts for each cell at a chosen sequencing depth.

The model was pre-trained to reconstruct a cell's full counts from a thinned copy when told the full depth. So
we feed the measured counts and tell it ``depth_multiplier`` × the cell's depth; the ZINB head gives μ (summing
to that depth over the context), θ and the zero-inflation π. We report the ZINB mean (1 − π)·μ — the expected
*measured* count, zeros included — rather than μ alone, which would describe a dropout-free assay the model was
never trained against.

A cell's context always holds all of its expressed genes, as in pre-training, so μ shares out the cell's whole
depth the way the model learnt to. Gene sets: None/'all' returns values for each cell's expressed genes only
(zeros stay zero). 'hvg' (``n_genes`` most variable) or a list of names adds the listed genes the cell did not
express to its context (with count 0) and returns values for every listed gene: that is imputation. The
whole list goes into one context by default: splitting it would repeat the cell's expressed genes in every
part (cost grows with the number of parts); ``max_listed_per_context`` splits longer lists into near-equal
parts when memory demands it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

from grnformer.data.collate import CellRecord, Collator
from grnformer.errors import InputError
from grnformer.tasks.inference import (
    DEFAULT_BATCH_SIZE, chunk_genes, context_collator, load_task_bundle, parse_gene_option, prepare_input,
    read_input, run_model, select_genes,
)
from grnformer.tasks.io import check_writable, write_h5ad
from grnformer.train.checkpoint import Bundle

LAYER = "grnformer_denoised"
DEFAULT_N_GENES = 2000


def denoise(bundle: Bundle, adata: AnnData, depth_multiplier: float = 1.0, genes: Sequence[str] | str | None = None,
            n_genes: int = DEFAULT_N_GENES, max_listed_per_context: int | None = None,
            batch_size: int = DEFAULT_BATCH_SIZE, device: str | torch.device | None = None, precision: str = "auto",
            organism: str | None = None, seed: int = 0, progress: bool = True) -> sp.csr_matrix:
    """Write layers['grnformer_denoised'] (CSR, float32, aligned with ``adata``'s genes) and return it.

    Genes outside the chosen set, genes that did not map to the vocabulary and cells prepare() dropped are 0."""
    if not depth_multiplier > 0:
        raise InputError(f"depth_multiplier must be > 0; got {depth_multiplier}.")
    if max_listed_per_context is not None and max_listed_per_context < 1:
        raise InputError(f"max_listed_per_context must be >= 1; got {max_listed_per_context}.")
    bundle, dev = load_task_bundle(bundle, device)
    prep = prepare_input(bundle, adata, organism)
    everything = genes is None or (isinstance(genes, str) and genes == "all")
    if not everything and isinstance(genes, str) and genes != "hvg":
        raise InputError(f"genes must be None, 'all', 'hvg' or a list of gene names; got '{genes}'.")
    listed = np.empty(0, dtype=np.int64) if everything else prep.tokens[select_genes(prep, genes, n_genes)]
    chunks = [] if everything else chunk_genes(listed, max_listed_per_context or len(listed))
    collator = context_collator(bundle, "all", seed=seed)
    contexts = [collator] if everything else [_with_genes(collator, chunk) for chunk in chunks]
    col_of_token = torch.full((bundle.config.vocab_size,), -1, dtype=torch.long, device=dev)
    col_of_token[torch.as_tensor(prep.tokens, device=dev)] = torch.arange(len(prep.tokens), device=dev)
    chunk_of_token = torch.full((bundle.config.vocab_size,), -1, dtype=torch.long, device=dev)
    for c, chunk in enumerate(chunks):
        chunk_of_token[torch.as_tensor(chunk, device=dev)] = c
    parts_r, parts_c, parts_v = [], [], []
    for rows, c, batch, out in run_model(bundle, prep, np.arange(prep.n_cells), contexts, dev, batch_size,
                                         precision, progress=progress, desc="denoise", depth_scale=depth_multiplier):
        expected = (1 - torch.sigmoid(out.pi_logit.float())) * out.mu.float()
        cols_b = col_of_token[batch["genes"]]
        wanted = batch["target"] > 0 if everything else chunk_of_token[batch["genes"]] == c
        r, p = torch.nonzero(wanted & (cols_b >= 0), as_tuple=True)
        parts_r.append(rows[r.cpu().numpy()])
        parts_c.append(cols_b[r, p].cpu().numpy())
        parts_v.append(expected[r, p].cpu().numpy().astype(np.float32))
    values = sp.csr_matrix((np.concatenate(parts_v), (np.concatenate(parts_r), np.concatenate(parts_c))),
                           shape=(prep.n_cells, prep.adata.n_vars), dtype=np.float32)
    layer = _to_user(values, prep.obs_rows, prep.user_var_columns(adata), adata.shape)
    adata.layers[LAYER] = layer
    adata.uns["grnformer_denoise"] = {"depth_multiplier": depth_multiplier,
                                      "genes": "all" if everything else genes if isinstance(genes, str) else "list",
                                      "value": "ZINB mean (1 - pi) * mu"}
    return layer


def _with_genes(collator: Collator, tokens: np.ndarray) -> Callable[[list[CellRecord]], dict[str, torch.Tensor]]:
    """Collate cells with ``tokens`` added to each cell's genes (count 0 where the cell did not express them)."""
    def collate(records: list[CellRecord]) -> dict[str, torch.Tensor]:
        extended = []
        for r in records:
            extra = tokens[~np.isin(tokens, r.genes)]
            extended.append(CellRecord(np.concatenate([r.genes, extra]),
                                       np.concatenate([r.counts, np.zeros(len(extra), dtype=np.float32)]),
                                       r.labels, r.organism))
        return collator(extended)
    return collate


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


def denoise_file(checkpoint: str | Path | Bundle, in_path: str | Path, out_path: str | Path, **opts: Any) -> Path:
    """CLI entry: the input h5ad with layers['grnformer_denoised'] added, written atomically to ``out_path``."""
    check_writable(out_path)
    bundle, _ = load_task_bundle(checkpoint, opts.get("device"))
    adata = read_input(in_path)
    opts["genes"] = parse_gene_option(opts.get("genes"), ("all", "hvg"))
    denoise(bundle, adata, **opts)
    return write_h5ad(adata, out_path)
