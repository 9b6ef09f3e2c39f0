"""Where the data shipped beside the repository (`shared/data`: McCalla sets, counts/) lives on this machine.

A user's machine has no `../shared`, so the directory can be named with ``$GRNFORMER_SHARED_DATA``; otherwise we
look for a ``shared/data`` folder next to any parent of the package and of the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from grnformer.errors import ResourceError

ENV_VAR = "GRNFORMER_SHARED_DATA"


def shared_data_dir() -> Path | None:
    """The shared data directory, or None when neither the variable nor a ``shared/data`` sibling exists."""
    named = os.environ.get(ENV_VAR)
    if named:
        return Path(named).expanduser()
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for parent in (start, *start.parents):
            candidate = parent / "shared" / "data"
            if candidate.is_dir():
                return candidate
    return None


def shared_path(relative: str, what: str = "") -> Path:
    """A file under the shared data directory; ResourceError saying how to supply it when it is missing."""
    root = shared_data_dir()
    path = root / relative if root is not None else None
    if path is None or not path.exists():
        where = f"{path} does not exist" if path is not None else "no shared/data directory was found"
        label = f"{what} " if what else ""
        raise ResourceError(f"shared data file {label}'{relative}' is missing: {where}. Set ${ENV_VAR} to the "
                            f"directory holding it (the repository's ../shared/data).")
    return path
