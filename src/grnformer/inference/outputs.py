"""The tasks' output files, all atomic (`grnformer.atomic`: ``NAME.part`` beside the destination, then renamed).

A crash, a full disk or an error half-way through leaves the destination untouched and no ``.part`` behind, so
a user never mistakes a truncated h5ad or CSV for a result. Files that belong together (a network's h5ad and its
edge CSV: `networks.network_file`) are all written as parts first and renamed only when every part is complete;
per-group networks are published group by group, so an interrupted run keeps its finished groups and can resume
(`networks.files.grn_file`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from anndata import AnnData

from grnformer.atomic import atomic_paths, write_text
from grnformer.errors import InputError
from grnformer.inference.distributed import is_writer


def check_writable(path: str | Path, overwrite: bool = True) -> Path:
    """Fail early (InputError, before any computation) when ``path`` cannot become an output file."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"output '{path}' is a directory; give a file name.")
    if not path.parent.exists():
        raise InputError(f"output directory '{path.parent}' does not exist.")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"cannot write into '{path.parent}' (permission denied).")
    if path.exists() and not overwrite:
        raise InputError(f"output '{path}' already exists.")
    return path


def write_many(writers: Mapping[str | Path, Callable[[Path], None]]) -> list[Path]:
    """Run ``writer(part_path)`` for every destination, then publish all of them together (on rank 0 only when
    several processes share the work: `inference.distributed`)."""
    dests = list(writers)
    if not is_writer():
        return [Path(d) for d in dests]
    with atomic_paths(dests) as parts:
        for dest, part in zip(dests, parts):
            writers[dest](part)
    return [Path(d) for d in dests]


def _h5ad_safe(value: Any) -> Any:
    """h5ad's uns cannot store None or tuples: None becomes the string 'none', tuples become lists."""
    if value is None:
        return "none"
    if isinstance(value, Mapping):
        return {str(k): _h5ad_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not any(isinstance(v, (np.ndarray, Mapping)) for v in value):
        return [_h5ad_safe(v) for v in value]
    return value


def h5ad_writer(adata: AnnData) -> Callable[[Path], None]:
    def write(part: Path) -> None:
        original = adata.uns
        adata.uns = _h5ad_safe(dict(original))
        try:
            adata.write_h5ad(part)
        finally:
            adata.uns = original
    return write


def write_h5ad(adata: AnnData, path: str | Path) -> Path:
    """Write ``adata`` to ``path`` atomically (None values in uns are stored as 'none')."""
    return write_many({path: h5ad_writer(adata)})[0]


def write_json(obj: Any, path: str | Path) -> Path:
    return write_text(path, json.dumps(obj, indent=1))
