"""The loaded model: weights with the configuration, gene vocabulary, label encoders and card they need.

Its own room between `model` and `train`: training writes bundles, every zero-shot use (inference, tasks,
networks, bench) reads them, and none of the readers imports the training room (tests/test_layers.py).
"""

from grnformer.bundle.checkpoint import (
    Bundle,
    describe,
    describe_bundle,
    load_bundle,
    read_checkpoint,
    resolve_checkpoint,
    save_bundle,
)

__all__ = ["Bundle", "describe", "describe_bundle", "load_bundle", "read_checkpoint", "resolve_checkpoint",
           "save_bundle"]
