"""Training layer: the Lightning plan and data module, `pretrain`, warm starts and the self-supervised fine-tune.

The names load on first use, so importing the package costs nothing; bundles (what training writes) live in
`grnformer.bundle`, which zero-shot code reads without importing this room.
"""

from importlib import import_module
from typing import Any

_LAZY = {"PretrainPlan": "plan", "OptimConfig": "plan", "CorpusDataModule": "datamodule",
         "pretrain": "pretrain", "load_config": "pretrain", "build": "pretrain"}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"grnformer.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'grnformer.train' has no attribute '{name}'")
