"""The one file-to-file runner behind every model command (embed, classify, denoise, adapt, grn, diffnet,
select-heads): check the output, load the model, read the cells, run the task, write atomically, report.

Why one owner: the order is a promise to users. Everything that can be refused without reading the cells (a
bad output path, a bad option, a model the options do not fit) is refused first, so a mistake costs seconds and
leaves no output; the output is written only when the task has finished, through `inference.outputs`' atomic
writers. The task functions themselves (`tasks.embed.embed`, `networks.grn.grn`, …) take an AnnData and are what
the `Model` object calls; the `*_file` functions are this runner with the task's own steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from anndata import AnnData

from grnformer.bundle.checkpoint import Bundle
from grnformer.inference.device import load_task_bundle
from grnformer.inference.outputs import check_writable, write_h5ad
from grnformer.inference.prepared import read_input

Result = TypeVar("Result")
Written = TypeVar("Written", Path, list[Path])


def write_cells(adata: AnnData, result: Any, out: Path) -> Path:
    """The default output of a cell task: the input cells with the task's results added, as one h5ad."""
    return write_h5ad(adata, out)


def run_file(checkpoint: str | Path | Bundle, in_path: str | Path | AnnData, out: str | Path,
             run: Callable[[Bundle, AnnData, torch.device], Result],
             write: Callable[[AnnData, Result, Path], Written] = write_cells, *,
             check: Callable[[Path], Any] = check_writable, check_model: Callable[[Bundle], Any] | None = None,
             report: Callable[[Result], None] | None = None,
             read: Callable[[str | Path | AnnData], AnnData | None] = read_input,
             device: str | torch.device | None = None) -> Written:
    """Run one task from files to files.

    ``check(out)`` runs before anything is loaded and ``check_model(bundle)`` before the cells are read; both
    raise `InputError` to refuse. ``run(bundle, adata, device)`` does the work, ``write(adata, result, out)``
    writes atomically and returns what it wrote, and ``report(result)`` tells the user (after the write).
    ``read(in_path)`` reads the cells; a task that streams a file too large for memory (`grn` with a data
    method) returns None there and reads the file itself."""
    out = Path(out)
    check(out)
    bundle, dev = load_task_bundle(checkpoint, device)
    if check_model is not None:
        check_model(bundle)
    adata = read(in_path)
    result = run(bundle, adata, dev)
    written = write(adata, result, out)
    if report is not None:
        report(result)
    return written
