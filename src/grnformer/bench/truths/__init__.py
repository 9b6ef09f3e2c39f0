"""Ground-truth networks by name: the registry of loaders (`load_truth`, `available_truths`) and everything a caller
imports from ``grnformer.bench.truths``.

The loaders live in submodules that import only `ground_truth` (the `GroundTruth` type and the symbol rules), never
this package's registry, so nothing imports back: `databases` (Omnipath, ENCODE), `gold_standards` (McCalla),
`beeline_files` (BEELINE directories, the one reader of their files) and `perturbation_screen` (edges from a
perturbation AnnData).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from grnformer.bench.truths.beeline_files import beeline, beeline_expression
from grnformer.bench.truths.databases import encode_chip, omnipath, uniprot_to_symbol
from grnformer.bench.truths.gold_standards import (
    MCCALLA_CELLS,
    MCCALLA_NETWORKS,
    mccalla,
)
from grnformer.bench.truths.ground_truth import (
    YEAST,
    GroundTruth,
    as_truth,
    finish_truth,
    normalise_edges,
    normalise_symbols,
)
from grnformer.bench.truths.perturbation_screen import perturbation
from grnformer.errors import InputError

__all__ = [
    "MCCALLA_CELLS",
    "MCCALLA_NETWORKS",
    "YEAST",
    "GroundTruth",
    "as_truth",
    "available_truths",
    "beeline",
    "beeline_expression",
    "encode_chip",
    "finish_truth",
    "load_truth",
    "mccalla",
    "normalise_edges",
    "normalise_symbols",
    "omnipath",
    "perturbation",
    "uniprot_to_symbol",
]

Loader = tuple[Callable[..., GroundTruth], dict, str]  # (loader, fixed keyword arguments, description)


def _registry() -> dict[str, Loader]:
    reg: dict[str, Loader] = {
        "omnipath": (omnipath, {}, "Omnipath, all interaction types (human)"),
        "omnipath_tf": (omnipath, {"transcriptional_only": True}, "Omnipath transcriptional TF→target (human)"),
        "encode_chip": (encode_chip, {}, "ENCODE ChIP-seq target sets, merged over cell lines (human)"),
        "mccalla": (mccalla, {}, "McCalla gold standard: cell=..., network=..."),
        "beeline": (beeline, {}, "reference network of a BEELINE directory: directory=..."),
        "perturbation": (perturbation, {}, "edges from a perturbation AnnData: adata=, perturbation_key=, control="),
    }
    what = {"chip_kd": "ChIP ∩ knock-down", "chip": "ChIP union", "kd": "knock-down union"}
    for key, (folder, _) in MCCALLA_CELLS.items():
        for short, desc in what.items():
            reg[f"mccalla_{key}_{short}"] = (mccalla, {"cell": folder, "network": short}, f"McCalla {folder} {desc}")
    return reg


REGISTRY = _registry()


def available_truths() -> dict[str, str]:
    """Registered ground-truth names and what they are."""
    return {k: v[2] for k, v in REGISTRY.items()}


def load_truth(name: str, **kw) -> GroundTruth:
    """Load a ground truth by registered name; keyword arguments go to its loader."""
    if name not in REGISTRY:
        raise InputError(f"unknown ground truth {name!r}; known: {', '.join(REGISTRY)}")
    fn, fixed, what = REGISTRY[name]
    args = {**fixed, **kw}
    try:
        inspect.signature(fn).bind(**args)
    except TypeError as err:
        raise InputError(f"ground truth {name!r} cannot be loaded with {sorted(args)}: {err} ({what})") from None
    return fn(**args)
