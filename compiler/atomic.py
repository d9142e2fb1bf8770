"""Atomic file writes: a temporary sibling, renamed into place, so a failure
never leaves a half-written file; the result gets the permissions a plain
`open(path, "w")` would give (the umask), not the temporary file's 0600."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable


def umask_mode(base: int = 0o666) -> int:
    """`base` as the process umask leaves it (0o777 for directories)."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def write_atomic(path: "str | os.PathLike", write: Callable[[IO[bytes]], None]) -> Path:
    """Write `path` through `write(file)` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
