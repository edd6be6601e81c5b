"""Atomic file writes: temp file in the same directory, fsync, rename, fsync dir.

A reader sees the old bytes or the new bytes, never a torn file, whatever
moment the process is killed at (RELIABILITY.md invariant 2).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from canon import failpoints


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # a read-only command (status) never writes: no import

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        failpoints.hit("atomic.before_rename")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
