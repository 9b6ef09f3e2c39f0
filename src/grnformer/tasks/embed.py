"""Cell embeddings: the model's cell token, its cell-type token, or their mean, in obsm['X_grnformer'].

The cell token summarises the whole profile (it also has to regenerate it in the bottleneck task); the
cell-type token is the one the cell-type classifier reads, so it separates types more and batches less. Their
mean is offered as a compromise. Contexts are drawn as in pre-training (random expressed genes, padded with
unexpressed ones) from a fixed seed, so embeddings are reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from anndata import AnnData

from grnformer.bundle.checkpoint import Bundle
from grnformer.errors import InputError
from grnformer.inference.device import load_task_bundle
from grnformer.inference.distributed import combine_rows
from grnformer.inference.file_runner import run_file
from grnformer.inference.loop import context_collator, run_model
from grnformer.inference.option_fields import options_from
from grnformer.inference.prepared import prepare_input
from grnformer.tasks.task_options import EmbedOptions

KEY = "X_grnformer"


def embed(bundle: Bundle, adata: AnnData, options: EmbedOptions | None = None, *,
          device: str | torch.device | None = None, progress: bool = True, **keywords: Any) -> np.ndarray:
    """Write obsm['X_grnformer'] (and obsm['X_umap'] with ``umap``) into ``adata``; return the embeddings.

    ``options``: an `EmbedOptions`, its fields as keywords, or both (keywords win). Cells prepare() drops (no
    counts in vocabulary genes) get NaN rows and are left out of the UMAP."""
    o = options_from(EmbedOptions, options, keywords).validate()
    bundle, dev = load_task_bundle(bundle, device)
    classes = list(bundle.config.label_sizes)
    if o.source != "cell" and "cell_type" not in classes:
        raise InputError(f"source '{o.source}' needs a cell_type label token; this model's label classes: "
                         f"{', '.join(classes) or 'none'}.")
    prep = prepare_input(bundle, adata, o.organism)
    collator = context_collator(bundle, "random-expressed", seed=o.seed)
    rows = np.arange(prep.n_cells)
    emb = np.zeros((prep.n_cells, bundle.config.d_model), dtype=np.float32)
    for batch_rows, _, _, out in run_model(bundle, prep, rows, [collator], dev, o.batch_size, o.precision,
                                           progress=progress, desc="embed", sharded=True):
        if o.source == "cell":
            vec = out.cell_emb
        else:
            ct = out.label_emb[:, classes.index("cell_type")]
            vec = ct if o.source == "cell_type" else (out.cell_emb + ct) / 2
        emb[batch_rows] = vec.float().cpu().numpy()
    emb = combine_rows(emb)
    adata.obsm[KEY] = prep.to_user_rows(emb, adata.n_obs)
    adata.uns["grnformer_embed"] = {"source": o.source, "seed": o.seed,
                                    "context_length": bundle.config.context_length}
    if o.umap:
        adata.obsm["X_umap"] = prep.to_user_rows(umap_of(emb, o.seed), adata.n_obs)
    return emb


def umap_of(emb: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """2-D UMAP of embeddings through scanpy's neighbour graph (cosine distance)."""
    import scanpy as sc

    work = AnnData(np.zeros((len(emb), 0), dtype=np.float32), obsm={KEY: emb})
    sc.pp.neighbors(work, use_rep=KEY, n_neighbors=min(n_neighbors, len(emb) - 1), metric="cosine",
                    random_state=seed)
    sc.tl.umap(work, random_state=seed)
    return np.asarray(work.obsm["X_umap"], dtype=np.float32)


def embed_file(checkpoint: str | Path | Bundle, in_path: str | Path, out_path: str | Path,
               options: EmbedOptions | None = None, *, device: str | torch.device | None = None,
               progress: bool = True, **keywords: Any) -> Path:
    """CLI entry: the input h5ad with obsm['X_grnformer'] (+ X_umap) added, written atomically to ``out_path``
    (options as for `embed`, checked before anything is read)."""
    options = options_from(EmbedOptions, options, keywords).validate()
    return run_file(checkpoint, in_path, out_path,
                    lambda bundle, adata, dev: embed(bundle, adata, options, device=dev, progress=progress),
                    device=device)
