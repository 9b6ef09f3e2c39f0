"""Head selection from files: the CLI's `select-heads` (an h5ad and an edge-list truth in, a JSON out)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from grnformer.errors import InputError
from grnformer.inference.device import load_task_bundle
from grnformer.inference.outputs import check_writable
from grnformer.inference.prepared import read_input
from grnformer.metrics import read_edge_list
from grnformer.networks.grn import GRNOptions, grn
from grnformer.networks.heads import check_split, select_heads_from_network
from grnformer.networks.methods import get_method
from grnformer.networks.options import SELECTION_FIXED
from grnformer.train.checkpoint import Bundle


def select_heads_file(checkpoint: str | Path | Bundle, in_path: str | Path, truth_path: str | Path,
                      out_json: str | Path, options: GRNOptions | None = None, *, split: str = "edges",
                      train_fraction: float = 0.5, device: str | torch.device | None = None,
                      progress: bool = True) -> Path:
    """Fit a head selection on an h5ad's network against an edge-list ground truth; write its JSON.

    ``options`` choose the network as for `grn` (`networks.options.SELECT_HEADS_OPTIONS`); those in
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
    bundle, _ = load_task_bundle(checkpoint, device)
    net = grn(bundle, read_input(in_path), dataclasses.replace(options, keep_heads=True), device=device,
              progress=progress)
    selection = select_heads_from_network(net, truth, split=split, train_fraction=train_fraction,
                                          seed=options.seed)
    return selection.save(out_json)
