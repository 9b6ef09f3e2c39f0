"""grnformer as a benchmark method: `grn` in the shape ``(adata, genes, regulators, **options) -> network``.

Registered by `bench.runner` beside the baselines; tasks never import bench.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from grnformer.tasks.grn import GRNOptions, grn
from grnformer.tasks.inference import load_task_bundle
from grnformer.train.checkpoint import Bundle


@lru_cache(maxsize=2)
def _cached_bundle(checkpoint: str) -> Bundle:
    return load_task_bundle(checkpoint)[0]


def benchmark_method(adata: AnnData, genes: Sequence[str], regulators: Sequence[str] | None = None, *,
                     checkpoint: str | Path | Bundle, **options: Any) -> AnnData:
    """The network of ``adata`` over ``genes``; ``options`` are `GRNOptions` fields (genes excepted).

    Rows of genes outside ``regulators`` are zeroed: only they may regulate, as for the baselines. The
    checkpoint is loaded once per process."""
    bundle = checkpoint if isinstance(checkpoint, Bundle) else _cached_bundle(str(checkpoint))
    net = grn(bundle, adata, GRNOptions(genes=list(genes), **options), progress=False)
    if regulators is not None:
        keep = np.isin(net.var["symbol"].to_numpy(), list(regulators)) | np.isin(net.var_names, list(regulators))
        grn_matrix = net.varp["GRN"]
        mask = sp.diags(keep.astype(np.float32))
        net.varp["GRN"] = (mask @ grn_matrix).astype(np.float32) if sp.issparse(grn_matrix) \
            else grn_matrix * keep[:, None].astype(np.float32)
        net.uns["grn"]["regulators"] = int(keep.sum())
    return net
