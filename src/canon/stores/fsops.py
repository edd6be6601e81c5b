"""Filesystem primitives the stores build on: whole writes, ``syncfs``, atomic swaps.

Linux calls the ``os`` module lacks (``syncfs(2)``, ``renameat2(RENAME_EXCHANGE)``)
go through libc, with portable fallbacks where they are missing.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from canon.stores.atomic import fsync_dir

_RENAME_EXCHANGE = 2  # linux/fs.h, for renameat2
_AT_FDCWD = -100


def write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


@functools.cache
def _libc() -> Any:
    """libc, for syncfs and renameat2 (not in the os module); loaded on first use."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def syncfs(path: Path) -> None:
    """Flush the filesystem holding ``path`` (``os.sync()`` if syncfs is missing)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fn = getattr(_libc(), "syncfs", None)
        if fn is None or fn(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap ``a`` and ``b`` (Linux renameat2); False if unsupported."""
    fn = getattr(_libc(), "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(tmp: Path, dest: Path) -> None:
    """Put ``tmp`` at ``dest`` in one step and delete what was there."""
    try:
        old = os.lstat(dest)
    except FileNotFoundError:
        old = None
    try:
        if old is None or (not stat.S_ISDIR(old.st_mode) and not tmp.is_dir()):
            os.replace(tmp, dest)  # atomic for file over file (or over nothing)
        elif exchange(tmp, dest):  # tmp now holds the old content
            remove(tmp)
        else:  # no renameat2: move the old aside first; dest is briefly absent, never mixed
            trash = dest.with_name(f".{dest.name}.canon-old-{os.getpid()}-{time.monotonic_ns()}")
            os.rename(dest, trash)
            os.rename(tmp, dest)
            remove(trash)
        fsync_dir(dest.parent)
    except BaseException:
        remove(tmp)
        raise


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def rmdirs(paths: set[str]) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            os.rmdir(p)


def unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def discard(fd: int, path: str) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
    unlink(path)
