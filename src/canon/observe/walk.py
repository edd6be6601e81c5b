"""The walk: every file under a tree with its stat, and the tree's fingerprint.

Its own module, with no heavy imports, so that ``canon.observe.prewalk`` can run
it in a forked child while the parent process is still importing.
"""

from __future__ import annotations

import os
from array import array
from hashlib import sha256
from pathlib import Path
from typing import NamedTuple

from canon.errors import PathError

_FINGERPRINT_VERSION = b"canon-fingerprint-1\x00"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
LINK_HINT = (
    "canon does not follow symbolic links in data or outputs (a link can lead out "
    "of the workspace); replace the link with the file or directory it points to"
)


class Changed(Exception):
    """Something changed while we looked; walk again."""


class Listing(NamedTuple):
    """One directory of a walk: non-directory entries and their stats, flat."""

    rel: str  # path inside the tree, "" for its top, else ending in "/"
    names: list[str]  # sorted
    stats: list[int]  # inode, size, mtime_ns, st_mode for each name, in order


class Walk(NamedTuple):
    listings: list[Listing]
    fingerprint: str
    nfiles: int
    size: int
    max_mtime_ns: int


def walk(top: Path, relpath: str) -> Walk:
    """Every non-directory entry under ``top`` with its stat, and the fingerprint."""
    h = sha256(_FINGERPRINT_VERSION)
    listings: list[Listing] = []
    stack: list[str] = [""]
    nfiles = size = 0
    max_mtime = -(1 << 63)
    base = str(top) + "/"
    lstat = os.stat
    while stack:
        rel = stack.pop()
        try:
            fd = os.open(base + rel, _DIR_FLAGS)
        except FileNotFoundError as exc:
            raise Changed from exc
        except OSError as exc:
            where = f"{relpath}/{rel}".rstrip("/")
            if os.path.islink(base + rel):
                raise PathError(f"{where} is a symbolic link", hint=LINK_HINT) from exc
            raise PathError(f"cannot read directory {where}: {exc.strerror}") from exc
        try:
            with os.scandir(fd) as it:
                entries = list(it)
            names = sorted([e.name for e in entries if not e.is_dir(follow_symlinks=False)])
            subdirs = sorted([e.name for e in entries if e.is_dir(follow_symlinks=False)])
            ints: list[int] = []
            for name in names:
                st = lstat(name, dir_fd=fd, follow_symlinks=False)
                ints += (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)
        except FileNotFoundError as exc:
            raise Changed from exc
        except OSError as exc:
            where = f"{relpath}/{rel}".rstrip("/")
            raise PathError(f"cannot read directory {where}: {exc.strerror}") from exc
        finally:
            os.close(fd)
        stack.extend(rel + d + "/" for d in reversed(subdirs))
        if names:
            listings.append(Listing(rel, names, ints))
            nfiles += len(names)
            size += sum(ints[1::4])
            max_mtime = max(max_mtime, max(ints[2::4]))
        h.update(f"{rel}\x00{len(names)}\x00".encode("utf-8", "surrogateescape"))
        h.update("\x00".join(names).encode("utf-8", "surrogateescape"))
        h.update(_pack(ints))
    return Walk(listings, h.hexdigest(), nfiles, size, max_mtime)


def _pack(ints: list[int]) -> bytes:
    try:
        return array("q", ints).tobytes()
    except OverflowError:  # an inode >= 2**63: spell the numbers out instead
        return (" ".join(map(str, ints)) + "\n").encode()
