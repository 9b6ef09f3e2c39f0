"""The one resolver for the benchmark data that does not come from PyPI (`shared/data`: McCalla sets, counts/,
perturb/). Nothing else builds paths to these files.

A file ``RELATIVE`` (e.g. ``counts/pbmc_ifnb.h5ad``) is taken from the first of these directories that holds it:

1. ``$GRNFORMER_SHARED_DATA``;
2. ``shared/data`` beside the repository (``<repo>/../shared/data``; only for a source checkout);
3. the cache: ``$GRNFORMER_CACHE/shared`` or ``~/.cache/grnformer/shared``.

Decision: the search is per file, not per directory, so a user can keep a few files in the cache and still see
the checkout's copy of the rest; a directory that lacks the file is simply passed over.
A missing file raises `SharedDataMissing` (a ResourceError) naming the file, every place looked in and how to
supply it; the tests turn that error into a skip with the same reason (tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from grnformer.data.resources import cache_dir
from grnformer.errors import ResourceError

ENV_VAR = "GRNFORMER_SHARED_DATA"
REPOSITORY = Path(__file__).resolve().parents[3]  # src/grnformer/data/shared.py → the checkout (if it is one)


class SharedDataMissing(ResourceError):
    """A file of the shared benchmark data is in none of the searched directories; ``relative`` names it."""

    def __init__(self, message: str, relative: str):
        super().__init__(message)
        self.relative = relative


def _beside_repository() -> Path | None:
    """``<repo>/../shared/data`` when the package runs from a source checkout (an installed wheel has none)."""
    if not (REPOSITORY / "pyproject.toml").is_file():
        return None
    return REPOSITORY.parent / "shared" / "data"


def search_dirs() -> list[tuple[str, Path]]:
    """(where, directory) in search order; directories that do not exist are listed too (for the messages)."""
    dirs = []
    named = os.environ.get(ENV_VAR)
    if named:
        dirs.append((f"${ENV_VAR}", Path(named).expanduser()))
    beside = _beside_repository()
    if beside is not None:
        dirs.append(("beside the repository", beside))
    dirs.append(("cache", cache_dir() / "shared"))
    return dirs


def find_shared(relative: str) -> Path | None:
    """The file (or directory) ``relative`` from the first search directory holding it, else None."""
    for _, root in search_dirs():
        if (root / relative).exists():
            return root / relative
    return None


def how_to_supply(relative: str) -> str:
    """Where the file was looked for and how to supply it (one paragraph)."""
    looked = "; ".join(f"{root / relative} ({where})" for where, root in search_dirs())
    return (f"Looked in: {looked}. These files ship beside the source repository (its ../shared/data, with "
            f"PROVENANCE.md files naming their origin), not on PyPI: set ${ENV_VAR} to a directory holding "
            f"'{relative}', or copy it to {cache_dir() / 'shared' / relative}.")


def shared_path(relative: str, what: str = "", hint: str = "") -> Path:
    """A file (or directory) of the shared data; `SharedDataMissing` saying how to supply it when it is missing."""
    path = find_shared(relative)
    if path is None:
        label = f"{what} " if what else ""
        raise SharedDataMissing(f"shared data file {label}'{relative}' is missing. {how_to_supply(relative)}"
                                + (f" {hint}" if hint else ""), relative)
    return path


def shared_files(relative_dir: str, pattern: str) -> dict[str, Path]:
    """Files matching ``pattern`` in ``relative_dir`` of every search directory, by name; the first directory
    holding a name wins (as in `find_shared`)."""
    out: dict[str, Path] = {}
    for _, root in search_dirs():
        folder = root / relative_dir
        if folder.is_dir():
            for path in sorted(folder.glob(pattern)):
                out.setdefault(path.name, path)
    return out


def shared_data_dir() -> Path | None:
    """The first search directory that exists, or None (kept for callers that list a whole folder; prefer
    `shared_path` / `shared_files`, which search every directory)."""
    return next((root for _, root in search_dirs() if root.is_dir()), None)
