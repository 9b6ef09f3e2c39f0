"""Atomic output for every layer: a file (or directory) is written as ``NAME.part`` beside its destination, then
renamed over it.

A crash, a full disk or an error half-way through leaves the destination untouched and no ``.part`` behind, so
nobody mistakes a truncated h5ad, checkpoint or report for a result. Several destinations written together are
renamed only when every part is complete. This module sits beside `errors` so that data, train, tasks and bench
can all use it; `inference.outputs` builds its h5ad / JSON writers on it, `networks.network_file` a network's.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence


def part_path(path: str | Path, unique: bool = False) -> Path:
    """``NAME.part`` beside ``path``; with ``unique``, ``NAME.<pid>.part`` so concurrent processes (data-loader
    workers, DDP ranks) filling the same cache never write into one part."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.part" if unique else f"{path.name}.part")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_paths(paths: Sequence[str | Path], unique: bool = False) -> Iterator[list[Path]]:
    """Yield the part path of each destination; on success rename them all, on error delete them all.

    A part may be a file or a directory (a corpus); a destination directory is replaced as a whole. A stale part
    left by an earlier crash is removed first.
    """
    dests = [Path(p) for p in paths]
    parts = [part_path(p, unique) for p in dests]
    for p in parts:
        _remove(p)
    try:
        yield parts
        missing = [str(p) for p in parts if not p.exists()]
        if missing:
            raise RuntimeError(f"writer produced no file for {missing}")
    except BaseException:
        for p in parts:
            _remove(p)
        raise
    for part, dest in zip(parts, dests):
        if part.is_dir() and dest.is_dir():
            shutil.rmtree(dest)
        os.replace(part, dest)


@contextmanager
def atomic_path(path: str | Path, unique: bool = False) -> Iterator[Path]:
    """One destination: yield its part path, publish it on success."""
    with atomic_paths([path], unique) as (part,):
        yield part


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as part:
        part.write_text(text)
    return Path(path)
