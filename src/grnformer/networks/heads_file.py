"""Head selection from files: the CLI's `select-heads` (an h5ad and an edge-list truth in, a JSON out)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from anndata import AnnData

from grnformer.bundle.checkpoint import Bundle
from grnformer.edge_metrics import read_edge_list
from grnformer.errors import InputError
from grnformer.inference.file_runner import run_file
from grnformer.inference.outputs import check_writable
from grnformer.networks.grn import GRNOptions, grn
from grnformer.networks.grn_options import SELECTION_FIXED
from grnformer.networks.heads import HeadSelection, check_split, select_heads_from_network
from grnformer.networks.methods import get_method


def select_heads_file(checkpoint: str | Path | Bundle, in_path: str | Path, truth_path: str | Path,
                      out_json: str | Path, options: GRNOptions | None = None, *, split: str = "edges",
                      train_fraction: float = 0.5, device: str | torch.device | None = None,
                      progress: bool = True) -> Path:
    """Fit a head selection on an h5ad's network against an edge-list ground truth; write its JSON.

    ``options`` choose the network as for `grn` (`networks.grn_options.SELECT_HEADS_OPTIONS`); those in
    SELECTION_FIXED must keep their defaults. ``options.seed`` draws both the cells (with max_cells) and the
    split. The JSON holds the weights, the settings of the maps and the held-out metrics; pass it to grn
    (heads=FILE) on other data. Options are checked before the model runs."""
    options = options or GRNOptions(method="mean_qk")
    check_writable(out_json)
    check_split(split, train_fraction)
    default = GRNOptions()
    clash = sorted(n for n in SELECTION_FIXED if getattr(options, n) != getattr(default, n))
    if clash:
        raise InputError(f"head selection fits every head's unfiltered map; drop the options {clash}.")
    if not get_method(options.method).reads_attention:
        raise InputError(f"method '{options.method}' reads no attention heads: select heads with mean_qk or "
                         f"per_cell.")
    truth = read_edge_list(truth_path)

    def fit(bundle: Bundle, adata: AnnData, dev: torch.device) -> HeadSelection:
        net = grn(bundle, adata, dataclasses.replace(options, keep_heads=True), device=dev, progress=progress)
        return select_heads_from_network(net, truth, split=split, train_fraction=train_fraction, seed=options.seed)

    return run_file(checkpoint, in_path, out_json, fit, lambda adata, selection, out: selection.save(out),
                    device=device)
