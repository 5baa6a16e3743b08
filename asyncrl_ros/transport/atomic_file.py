"""Replace a file atomically: readers see the old content or the new, never half of it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, IO


def write_atomically(path: str | os.PathLike, write: Callable[[IO], None], mode: str = 'wb',
                     sync_dir: bool = False) -> None:
    """Call write(f) on a temporary file beside `path`, fsync it, rename it over `path`
    (atomic on POSIX); with `sync_dir`, fsync the folder so the rename survives a power loss."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
