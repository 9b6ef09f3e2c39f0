"""Warm start: begin a new run from the weights of an earlier model, with a fresh optimiser and schedule.

A training campaign grows its corpus (new sets arrive, new cell types with them), so the new model rarely has the
old one's exact shapes. Weights are carried over by meaning, not by position:
- gene embeddings row by row through the Ensembl ID (genes new to the vocabulary keep their fresh values);
- each label head's rows through the leaf's ontology term (new leaves start fresh);
- every other tensor when its name and shape match.
What was carried and what was not is returned, and the run records it in its configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from grnformer.bundle.checkpoint import load_bundle
from grnformer.data.corpus.labels import LabelSet
from grnformer.data.genes import GeneVocab
from grnformer.model import GRNFormer

_GENE_TABLES = ("gene_encoder.learned.weight",)


def _rows(new: list[str], old: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into new, into old) of the names both lists hold."""
    where = {name: i for i, name in enumerate(old)}
    pairs = [(i, where[name]) for i, name in enumerate(new) if name in where]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    a, b = zip(*pairs)
    return np.asarray(a), np.asarray(b)


def warm_start(model: GRNFormer, vocab: GeneVocab, label_set: LabelSet, source: str | Path) -> dict[str, Any]:
    """Copy what `source` (a bundle or training checkpoint) knows into `model`, in place; returns a summary."""
    old = load_bundle(source)
    old_state = old.model.state_dict()
    carried, skipped = [], []
    with torch.no_grad():  # trainable weights only: buffers (positions, frozen vectors) follow the new vocabulary
        for name, tensor in ((n, p) for n, p in model.named_parameters() if p.requires_grad):
            if name in _GENE_TABLES and name in old_state:
                new_i, old_i = _rows(list(vocab.ids), list(old.vocab.ids))
                tensor[torch.as_tensor(new_i)] = old_state[name][torch.as_tensor(old_i)].to(tensor.dtype)
                carried.append(f"{name} ({len(new_i)} of {len(vocab)} genes)")
            elif name.startswith("label_heads.") and name in old_state:
                label_class = name.split(".")[1]
                new_i, old_i = _rows(label_set.encoders[label_class].leaves, old.labels.encoders[label_class].leaves)
                tensor[torch.as_tensor(new_i)] = old_state[name][torch.as_tensor(old_i)].to(tensor.dtype)
                carried.append(f"{name} ({len(new_i)} of {tensor.shape[0]} leaves)")
            elif name in old_state and old_state[name].shape == tensor.shape:
                tensor.copy_(old_state[name])
                carried.append(name)
            else:
                skipped.append(name)
    return {"source": str(source), "n_carried": len(carried), "skipped": skipped,
            "partial": [c for c in carried if "(" in c]}
