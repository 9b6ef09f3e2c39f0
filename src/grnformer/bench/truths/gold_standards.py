"""The gold standards of McCalla et al. (G3 2023): ChIP, knock-down and their intersection for hESC, mESC, mDC and
yeast, read from the shared data (or a folder holding ``gold_standards/``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from grnformer.bench.truths.ground_truth import (
    YEAST,
    GroundTruth,
    finish_truth,
    normalise_edges,
    source,
)
from grnformer.data.genes import HUMAN, MOUSE
from grnformer.data.shared import find_shared, shared_path
from grnformer.errors import InputError, ResourceError

MCCALLA_CELLS = {"hesc": ("hESC", HUMAN), "mesc": ("mESC", MOUSE), "mdc": ("mDC", MOUSE), "yeast": ("yeast", YEAST)}
# short name → file stem after '<cell>_' (the yeast ones also exist under these names)
MCCALLA_NETWORKS = {"chip_kd": "chipunion_KDUnion_intersect", "chip": "chipunion", "kd": "KDUnion"}


def mccalla(cell: str, network: str = "chip_kd", root: str | Path | None = None) -> GroundTruth:
    """A McCalla et al. (G3 2023) gold standard: ``cell`` hESC, mESC, mDC or yeast; ``network`` chip_kd (ChIP ∩
    knock-down), chip (ChIP union), kd (knock-down union), or any other file stem in that folder (e.g. 'lit',
    'escapechip', 'hu'). ``root``: a directory holding ``gold_standards/`` (default: the shared data)."""
    key = cell.lower()
    if key not in MCCALLA_CELLS:
        raise InputError(f"unknown McCalla cell type {cell!r}; "
                         f"known: {', '.join(c for c, _ in MCCALLA_CELLS.values())}")
    folder, org = MCCALLA_CELLS[key]
    stem = MCCALLA_NETWORKS.get(network, network)
    names = [f"{folder}_{stem}.txt", f"{stem}.txt"]
    if root is not None:
        gs = Path(root) / "gold_standards" / folder
        path = next((gs / n for n in names if (gs / n).exists()), None)
    else:  # no copy of the folder at all: SharedDataMissing; a file the copy lacks: the message below
        gs = shared_path(f"mccalla/gold_standards/{folder}", hint="Or pass root=DIR holding gold_standards/.")
        path = next(filter(None, (find_shared(f"mccalla/gold_standards/{folder}/{n}") for n in names)), None)
    candidates = [gs / n for n in names]
    if path is None:
        have = sorted(p.stem for p in gs.glob("*.txt")) if gs.is_dir() else []
        raise ResourceError(f"McCalla network '{network}' for {folder} not found (looked for {candidates[0]}). "
                            f"Files present: {have or 'none'}. The shared copy leaves out files over 4 MiB "
                            f"(hESC chipunion among them); put the original gold_standards/ folder of McCalla et al. "
                            f"in a directory and pass root=DIR (or set GRNFORMER_SHARED_DATA).")
    raw = pd.read_csv(path, sep="\t", header=None, dtype=str, usecols=[0, 1], names=["regulator", "target"])
    prov = source(path, study="McCalla et al., G3 2023 (doi:10.1093/g3journal/jkad004)", cell=folder,
                   network=stem, rows=len(raw))
    edges = normalise_edges(raw.dropna(), org, prov)
    return finish_truth(edges, f"mccalla_{key}_{network}", org, prov)
