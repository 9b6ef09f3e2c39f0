"""Training layer: the Lightning plan and data module, `pretrain`, and self-contained checkpoints.

Checkpoint functions are imported eagerly; the Lightning-based names load on first use, so inference code that
only reads checkpoints never imports Lightning.
"""

from importlib import import_module
from typing import Any

from grnformer.train.checkpoint import Bundle, describe, load_bundle, save_bundle

_LAZY = {"PretrainPlan": "plan", "OptimConfig": "plan", "CorpusDataModule": "datamodule",
         "pretrain": "pretrain", "load_config": "pretrain", "build": "pretrain"}

__all__ = ["Bundle", "describe", "load_bundle", "save_bundle", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"grnformer.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'grnformer.train' has no attribute '{name}'")
