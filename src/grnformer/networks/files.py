"""Networks as files: the CLI's `grn` entry, each network written atomically as soon as it is done, and resume.

A re-run into the same output skips the networks whose h5ad records the same settings (uns['grn'], compared on
RESUME_KEYS) and network genes, and refuses files made otherwise unless ``overwrite`` — so a long run over many
cell types can be interrupted and resumed without mixing two settings.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
import torch
from anndata import AnnData
from anndata.io import read_elem

from grnformer.bundle.checkpoint import Bundle
from grnformer.errors import InputError
from grnformer.inference.file_runner import run_file
from grnformer.inference.outputs import check_writable
from grnformer.inference.prepared import read_input
from grnformer.networks.dispatch import contexts_per_cell, iter_networks, networks_in_one_pass
from grnformer.networks.grn import adapted, group_networks
from grnformer.networks.grn_options import NETWORK_SETTINGS, GRNOptions
from grnformer.networks.network_adata import provenance
from grnformer.networks.network_file import write_network
from grnformer.networks.network_plan import NetworkPlan, plan_networks, plan_streamed
from grnformer.networks.streaming_correlation import CHUNK_CELLS, streams

# What must agree for an existing network file to count as this run's output: every network setting (declared
# once, `networks.grn_options.NETWORK_SETTINGS`) and what the run made of the cells (uniform_level, a result, and the
# version are left out; the network genes are compared separately).
RESUME_KEYS = (*NETWORK_SETTINGS, "group", "n_cells", "n_contexts_per_cell", "model")


def grn_file(checkpoint: str | Path | Bundle, in_path: str | Path, out: str | Path,
             options: GRNOptions | None = None, *, csv: bool = False, csv_max_edges: int | None = None,
             overwrite: bool = False, device: str | torch.device | None = None, progress: bool = True
             ) -> list[Path]:
    """CLI entry: network(s) of an h5ad written as h5ad (+ edge CSV beside it with ``csv``).

    Without groupby, ``out`` is the network's h5ad path (or an existing directory, which gets network.h5ad);
    with groupby, a directory (created if missing) holding ``<group>.h5ad`` per group. Each network's files are
    written atomically as soon as it is done, so an interrupted run leaves only complete networks and the same
    command run again computes only the missing ones. An existing network made with other options, genes or
    cells is an InputError (before the model runs) unless ``overwrite``, which recomputes every network.
    Returns the run's network files, kept or written."""
    options = options or GRNOptions()
    grouped = options.groupby is not None
    checked: dict[str, GRNOptions] = {}  # the options validated against the model, before the cells are read

    def read(path: str | Path | AnnData) -> AnnData | None:
        """The cells in memory, or None when the file is too large for that and the data method streams it."""
        opts = checked["options"]
        if isinstance(path, AnnData) or not streams(path, opts.method, opts.genes, opts.n_genes, grouped):
            return read_input(path)
        if progress:
            print(f"{path}: too many cells to hold a dense cells × genes matrix in memory; streaming the file "
                  f"in chunks of {CHUNK_CELLS:,} cells (memory: genes² + one chunk)", file=sys.stderr)
        return None

    return run_file(checkpoint, in_path, out,
                    lambda bundle, adata, dev: _networks_into(Path(out), bundle, adata, in_path, dev,
                                                              checked["options"], csv, csv_max_edges, overwrite,
                                                              progress),
                    lambda adata, files, out: files, check=lambda out: _check_output(out, grouped),
                    check_model=lambda bundle: checked.setdefault("options", options.validate(bundle)),
                    read=read, device=device)


def _networks_into(out: Path, bundle: Bundle, adata: AnnData | None, in_path: str | Path | AnnData,
                   dev: torch.device, opts: GRNOptions, csv: bool, csv_max_edges: int | None, overwrite: bool,
                   progress: bool) -> list[Path]:
    """`grn_file`'s work once the model and cells are loaded (``adata`` None: the file at ``in_path`` is
    streamed): plan, keep what is done, write the rest (each network atomically as soon as it is made, so the
    write step is part of the run)."""
    grouped = opts.groupby is not None
    if adata is None:
        plan = plan_streamed(bundle, in_path, opts, out / "network" if out.is_dir() else out, progress)
    else:
        plan = plan_networks(bundle, adata, opts)
    stems = _file_stems(list(plan.groups)) if grouped else {}
    bases = {g: out / stems[g] if grouped else (out / "network" if out.is_dir() else out.with_suffix(""))
             for g in plan.groups}
    files = {g: [b.with_name(b.name + ext) for ext in (".h5ad", ".csv")[:1 + csv]] for g, b in bases.items()}
    done = [] if overwrite else [
        g for g in plan.groups
        if _is_done(files[g], provenance(bundle, plan.prep, opts, g, len(plan.groups[g]),
                                         contexts_per_cell(bundle, plan, opts, plan.groups[g])), plan)]
    if done and progress:
        print(f"kept {len(done)} network(s) already made with these settings: "
              f"{', '.join(files[g][0].name for g in done)}", file=sys.stderr)
    if grouped:
        out.mkdir(exist_ok=True)
    todo = [g for g in plan.groups if g not in done]
    if todo:
        bundle = adapted(bundle, adata, opts, dev)
    if opts.specificity != "none" and todo:  # formed from every group's network: all made, the missing written
        made = [(g, n) for g, n in group_networks(bundle, plan, opts, dev, progress).items() if g in todo]
    elif opts.contrast and todo:  # every cell's sums are needed: one pass makes all groups, the missing are written
        made = [(g, n) for g, n in networks_in_one_pass(bundle, plan, opts, dev, False, progress).items() if g in todo]
    else:
        made = iter_networks(bundle, plan, opts, dev, todo, progress)
    for g, net in made:
        write_network(net, files[g][0], csv, csv_max_edges)
    return [path for g in plan.groups for path in files[g]]


def _check_output(out: Path, grouped: bool) -> None:
    if not grouped:
        check_writable(out / "network.h5ad" if out.is_dir() else out)
    elif out.exists() and not out.is_dir():
        raise InputError(f"with groupby, the output '{out}' must be a directory.")
    else:
        check_writable(out / "probe.h5ad" if out.is_dir() else out)


def _is_done(paths: list[Path], expected: dict[str, Any], plan: NetworkPlan) -> bool:
    """Whether a network's files all exist and its h5ad was made with ``expected`` provenance on the same
    network genes; an h5ad made otherwise is an InputError (a resumed run must not mix two settings)."""
    if not paths[0].exists():
        return False
    try:
        with h5py.File(paths[0], "r") as f:
            found, gene_ids = read_elem(f["uns/grn"]), read_elem(f["var"])["gene_id"].astype(str).tolist()
    except Exception as err:  # h5py and anndata raise many types for a file that is not a network
        raise InputError(f"'{paths[0]}' exists and is not a grnformer network ({type(err).__name__}: {err}); "
                         f"choose another output or pass --overwrite.") from err
    differ = [f"{k}: {_plain(found.get(k))} there, {_plain(expected[k])} now" for k in RESUME_KEYS
              if _plain(found.get(k)) != _plain(expected[k])]
    if gene_ids != plan.prep.adata.var_names[plan.cols].astype(str).tolist():
        differ.append("the network genes")
    if differ:
        raise InputError(f"'{paths[0]}' holds a network made with other settings ({'; '.join(differ)}); choose "
                         f"another output or pass --overwrite to recompute.")
    return all(p.exists() for p in paths[1:])


def _plain(value: Any) -> Any:
    """A provenance value as plain Python, as it reads back from h5ad (where None is stored as 'none')."""
    if value is None:
        return "none"
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _file_stems(groups: list[str]) -> dict[str, str]:
    """File-safe stem per group (CL:0000236 -> CL_0000236); groups that collide get a numeric suffix."""
    stems: dict[str, str] = {}
    used: set[str] = set()
    for g in groups:
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(g)).strip("_") or "group"
        base, i = stem, 1
        while stem in used:
            i += 1
            stem = f"{base}_{i}"
        used.add(stem)
        stems[g] = stem
    return stems
