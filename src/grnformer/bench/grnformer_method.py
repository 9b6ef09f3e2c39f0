"""grnformer as a benchmark method: `grn` in the shape ``(adata, genes, regulators, **options) -> network``.

Registered by `bench.runner` beside the baselines; tasks never import bench.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from anndata import AnnData

from grnformer.bundle.checkpoint import Bundle
from grnformer.inference.device import load_task_bundle
from grnformer.networks.grn import GRNOptions, grn


@lru_cache(maxsize=2)
def _cached_bundle(checkpoint: str) -> Bundle:
    return load_task_bundle(checkpoint)[0]


def benchmark_method(adata: AnnData, genes: Sequence[str], regulators: Sequence[str] | None = None, *,
                     checkpoint: str | Path | Bundle, **options: Any) -> AnnData:
    """The network of ``adata`` over ``genes``; ``options`` are `GRNOptions` fields (genes excepted).

    Only ``regulators`` (default: every gene) may regulate, as for the baselines. The checkpoint is loaded once
    per process."""
    bundle = checkpoint if isinstance(checkpoint, Bundle) else _cached_bundle(str(checkpoint))
    opts = GRNOptions(genes=list(genes), regulators="all" if regulators is None else list(regulators), **options)
    return grn(bundle, adata, opts, progress=False)
