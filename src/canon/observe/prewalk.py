"""Walk big trees in a forked child while the parent process starts up.

A no-op ``canon status`` on a 50,000-file dataset spends its time in two
things that do not depend on each other: importing canon (~0.1 s) and one
``stat`` per file (~0.1 s, all of it system calls the GIL serialises, so
threads do not help). Git's ``core.preloadIndex`` overlaps its stats on
threads; Python cannot, but a process can. ``start`` forks right at the start
of ``status``/``plan``/``apply``; the child walks the trees that were big last
time (``.canon/prewalk``, one workspace path per line, kept by the content
reader) and sends the listings through a pipe. ``take`` hands a tree's listing
to the content reader once, instead of walking it again.

Safe by construction: the child only reads (``lstat``/``scandir``), never
writes a file or takes a lock, and leaves with ``os._exit``. Its listing is a
snapshot as of its start, and the reader treats it as that old for the
racy-mtime rule (``statcache``). Anything odd — no hints, a fork that fails,
a child that dies, a tree that vanished, a pipe that breaks — means the reader
walks the tree itself, as it would without this module.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import time
from pathlib import Path
from typing import Any

from canon.observe.walk import Listing, Walk

HINTS = "prewalk"  # under .canon/
MIN_FILES = 2000  # smaller trees walk faster than a fork pays back
MAX_HINTS = 16
COMMANDS = frozenset({"status", "plan", "apply"})

_child: tuple[int, int, int, str] | None = None  # owner pid, child pid, read fd, root
_results: dict[str, Any] | None = None


def start(args: list[str], cwd: str | None = None) -> None:
    """Fork the walker if ``args`` run a command that observes the workspace and the
    project has hints. Never raises."""
    global _child
    if _child is not None or not args or args[0] not in COMMANDS or "-C" in args:
        return
    try:
        root = _find_root(Path(cwd or os.getcwd()))
        if root is None:
            return
        rels = _read_hints(root / ".canon" / HINTS)
        if not rels:
            return
        r, w = os.pipe()
        pid = os.fork()
    except OSError:
        return
    if pid == 0:  # the child: walk, send, leave without running any cleanup
        code = 0
        try:
            os.close(r)
            _send(w, str(root), rels)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    _child = (os.getpid(), pid, r, str(root))


def take(root: Path, relpath: str) -> tuple[int, Walk] | None:
    """The child's walk of ``relpath`` (with the time it started), once; else None."""
    global _results
    if _child is None or _child[0] != os.getpid() or _child[3] != str(root):
        return None
    if _results is None:
        _results = _receive()
    got = _results.pop(relpath, None)
    if got is None:
        return None
    started, listings, fingerprint, nfiles, size, max_mtime = got
    return started, Walk([Listing(*x) for x in listings], fingerprint, nfiles, size, max_mtime)


def remember(hints: Path, relpath: str) -> None:
    """Add ``relpath`` to the hints file (atomically; best effort, never raises)."""
    with contextlib.suppress(OSError):
        rels = _read_hints(hints)
        if relpath in rels:
            return
        rels = [*rels, relpath][-MAX_HINTS:]
        tmp = hints.with_name(f".{hints.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(r + "\n" for r in rels))
        os.replace(tmp, hints)


def _send(fd: int, root: str, rels: list[str]) -> None:
    from canon.observe.walk import walk

    out: dict[str, Any] = {}
    for rel in rels:
        started = time.time_ns()
        try:
            tree = walk(Path(root, rel), rel)
        except Exception:
            continue
        listings = [(x.rel, x.names, x.stats) for x in tree.listings]
        out[rel] = (started, listings, tree.fingerprint, tree.nfiles, tree.size, tree.max_mtime_ns)
    view = memoryview(marshal.dumps(out))
    while view:
        view = view[os.write(fd, view) :]


def _receive() -> dict[str, Any]:
    assert _child is not None
    _, pid, fd, _ = _child
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            return {}
        got = marshal.loads(b"".join(chunks))
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return got if isinstance(got, dict) else {}


def _find_root(here: Path) -> Path | None:
    for candidate in (here, *here.parents):
        if (candidate / "canon.yaml").is_file():
            return candidate
    return None


def _read_hints(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return []
    return [
        r for r in text.splitlines() if r and not r.startswith("/") and ".." not in r.split("/")
    ]
