"""Content digests: ``sha256:<64 hex>``, the OCI spelling, for bytes and files.

A ``Digest`` is a plain ``str`` at run time (``NewType``), so it serialises as
itself into YAML, JSON and SQLite; ``parse_digest`` is the one gate through
which untrusted text becomes a ``Digest``.

How files are read (measured on the 2-core bench VM, 1 GiB file, page cache
warm; see ``bench/hashing.py``): ``readinto`` with a reused 1 MiB buffer runs at
~0.85 s, ``mmap`` at ~0.75 s, coreutils ``sha256sum`` at ~3.9 s (OpenSSL uses
the SHA-NI instructions, coreutils does not). We keep ``readinto`` even though
mmap is ~12 % faster: a file truncated by another process while it is mapped
kills the reader with SIGBUS, and canon hashes workspaces that running stages
(and users) write to. A slower hash is acceptable; a dead controller is not.

Many small files are hashed on every core by ``run_on_cores``: a process pool
and not threads, because hashlib only drops the GIL for buffers over 2 KiB and
a thread pool measured 4x *slower* than one thread for 50,000 files of
1-8 KiB (GIL hand-offs), while two processes are ~1.6x faster than one.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NewType, TypeVar

from canon.errors import StateError

if TYPE_CHECKING:  # multiprocessing is imported only when a pool is used: start-up stays fast
    import multiprocessing.context

Digest = NewType("Digest", str)

ALGORITHM = "sha256"
PREFIX = "sha256:"
BUFFER_SIZE = 1 << 20  # 1 MiB: larger buffers measured no faster, smaller ones slower

# When a process pool pays (measured on the bench VM): a pool of forked workers
# costs ~20 ms to start, a fork-server pool ~80-230 ms; one small file costs
# ~10 us to open, read and hash, a byte ~1 ns. The pool is used when the work
# is estimated at several times its start-up cost.
ITEM_COST_NS = 10_000
BYTE_COST_NS = 1
PARALLEL_MIN_WORK_NS = 80_000_000  # with fork; 8x that without

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_tls = threading.local()

T = TypeVar("T")
R = TypeVar("R")


def read_buffer() -> tuple[bytearray, memoryview]:
    """This thread's reusable 1 MiB read buffer and a view of it (allocating 1 MiB
    per file costs page faults: 2.5x slower hashing of small files)."""
    buf: tuple[bytearray, memoryview] | None = getattr(_tls, "buf", None)
    if buf is None:
        raw = bytearray(BUFFER_SIZE)
        buf = (raw, memoryview(raw))
        _tls.buf = buf
    return buf


def hash_bytes(data: bytes | bytearray | memoryview) -> Digest:
    """The digest of ``data``."""
    return Digest(PREFIX + hashlib.sha256(data).hexdigest())


def hash_fd(fd: int) -> tuple[Digest, int]:
    """Digest and length of everything readable from ``fd`` (from its current offset)."""
    raw, view = read_buffer()
    h = hashlib.sha256()
    total = 0
    while True:
        n = os.readv(fd, [raw])
        if not n:
            break
        h.update(view[:n])
        total += n
    return Digest(PREFIX + h.hexdigest()), total


def hash_file(path: str | os.PathLike[str]) -> Digest:
    """The digest of the file at ``path`` (read with a reused buffer; see module doc).

    Raises ``OSError`` as is: whether a missing file is an error is the caller's call;
    a FIFO, device or directory is ``OSError(EINVAL)`` (never a hang on a FIFO).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return hash_fd(fd)[0]
    finally:
        os.close(fd)


def is_digest(s: object) -> bool:
    """True if ``s`` is a well-formed ``sha256:<64 lowercase hex>`` string."""
    return isinstance(s, str) and _DIGEST_RE.fullmatch(s) is not None


def parse_digest(s: object) -> Digest:
    """``s`` as a ``Digest``, or ``StateError`` if it is not one."""
    if not is_digest(s):
        shown = repr(s)[:80]
        raise StateError(
            f"not a digest: {shown}",
            hint="a digest is 'sha256:' followed by 64 lowercase hex digits",
        )
    assert isinstance(s, str)
    return Digest(s)


def hex_of(d: Digest) -> str:
    """The 64 hex digits of ``d`` (no algorithm prefix)."""
    return d[len(PREFIX) :]


def digest_of_hex(hexdigest: str) -> Digest:
    """``sha256:`` + ``hexdigest``, checked."""
    return parse_digest(PREFIX + hexdigest)


# -- many files on every core -------------------------------------------------------


def _hash_chunk(paths: Sequence[str]) -> list[Digest | None]:
    out: list[Digest | None] = []
    for p in paths:
        try:
            out.append(hash_file(p))
        except OSError:
            out.append(None)
    return out


def hash_files(paths: Sequence[str], sizes: Sequence[int] | None = None) -> list[Digest | None]:
    """Digests of ``paths`` in order, on every core when it pays; ``None`` for a
    file that could not be read (vanished, unreadable) — the caller decides."""
    return run_on_cores(_hash_chunk, paths, sizes)


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _context() -> multiprocessing.context.BaseContext:
    # fork is the cheapest start (no re-import of __main__), but forking a process
    # that runs other threads can deadlock the child on a lock held at fork time;
    # long-running multi-threaded processes (controller, UI) get forkserver, which
    # pays its start-up once per process.
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def _chunks(items: Sequence[T], weights: Sequence[int], parts: int) -> list[list[T]]:
    """Consecutive slices of ``items`` with about equal total weight."""
    total = sum(weights) + len(items)  # +1 per item: opening a file costs too
    target = max(1, total // parts)
    out: list[list[T]] = []
    cur: list[T] = []
    acc = 0
    for item, w in zip(items, weights, strict=True):
        cur.append(item)
        acc += w + 1
        if acc >= target:
            out.append(cur)
            cur, acc = [], 0
    if cur:
        out.append(cur)
    return out


def _daemonic() -> bool:
    """Whether this process may not have children (a daemonic multiprocessing worker,
    e.g. a default ``dask worker``): the work is then done here."""
    import multiprocessing

    return bool(multiprocessing.current_process().daemon)


def run_on_cores(
    fn: Callable[[Sequence[T]], list[R]],
    items: Sequence[T],
    weights: Sequence[int] | None = None,
) -> list[R]:
    """``fn`` over ``items`` in chunks, in worker processes when there is enough
    work and more than one core, else in this process. ``fn`` must be a
    module-level function returning one result per item, in order; ``weights``
    (e.g. file sizes) balance the chunks. Results are in the order of ``items``.

    If the pool cannot start or a worker dies, the work is redone here: pools are
    an optimisation, never a new way to fail.
    """
    n = cores()
    context = _context()
    work = len(items) * ITEM_COST_NS + (sum(weights) * BYTE_COST_NS if weights else 0)
    threshold = PARALLEL_MIN_WORK_NS * (1 if context.get_start_method() == "fork" else 8)
    if n < 2 or len(items) < 2 or work < threshold or _daemonic():
        return fn(items)
    w = weights if weights is not None else [0] * len(items)
    parts = _chunks(items, w, n * 4)
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(max_workers=n, mp_context=context) as pool:
            results = list(pool.map(fn, parts))
    except (BrokenProcessPool, OSError, RuntimeError):
        return fn(items)
    out: list[R] = []
    for part, res in zip(parts, results, strict=True):
        if len(res) != len(part):  # a worker broke its contract; trust nothing from it
            return fn(items)
        out.extend(res)
    return out
