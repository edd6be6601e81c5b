"""Read-only checks of the local object cache: ``scan_cache`` re-hashes every object.

Nothing is trusted but the bytes: not sizes, not mtimes, not the stat cache.
Every file under ``.canon/cache/sha256/`` and every object of every pack under
``.canon/cache/packs/`` is read and hashed (on every core) and compared with
the digest its name or index claims. Anything else found there (a
file whose name is not a digest, a symlink, a directory where an object
should be) is reported as corrupt too. ``canon cache verify --repair``
(``canon.apply.cacherepair``) acts on the report; this module never writes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from canon.digest import PREFIX, Digest, hash_bytes, hash_file, run_on_cores
from canon.stores.objects import ObjectStore
from canon.stores.packset import Slot, read_slot

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class CacheReport:
    checked: int
    size: int
    corrupt: tuple[Digest, ...] = ()  # objects whose bytes are not their digest
    strays: tuple[str, ...] = field(default_factory=tuple)  # paths that are not objects at all


def list_objects(store: ObjectStore) -> tuple[list[tuple[Digest, str, int]], list[str]]:
    """Every object file (digest, path, size) and every stray path under the store."""
    objects: list[tuple[Digest, str, int]] = []
    strays: list[str] = []
    try:
        shards = sorted(os.scandir(store.objects), key=lambda e: e.name)
    except FileNotFoundError:
        return objects, strays
    for shard in shards:
        if (
            len(shard.name) != 2
            or not _HEX.issuperset(shard.name)
            or not shard.is_dir(follow_symlinks=False)
        ):
            strays.append(shard.path)
            continue
        for e in os.scandir(shard.path):
            st = e.stat(follow_symlinks=False)
            if len(e.name) != 62 or not _HEX.issuperset(e.name) or not stat.S_ISREG(st.st_mode):
                strays.append(e.path)
                continue
            objects.append((Digest(PREFIX + shard.name + e.name), e.path, st.st_size))
    return objects, strays


def scan_cache(store: ObjectStore) -> CacheReport:
    objects, strays = list_objects(store)
    jobs: list[tuple[str, str, int, int]] = [(d, path, -1, -1) for d, path, _ in objects]
    sizes = [size for _, _, size in objects]
    for p in store.packed():
        jobs.append((p.digest, p.slot.pack, p.slot.offset, p.slot.length))
        sizes.append(p.slot.length)
    results = run_on_cores(_check_chunk, jobs, sizes)
    corrupt = tuple(sorted({job[0] for job, ok in zip(jobs, results, strict=True) if not ok}))
    return CacheReport(len(jobs), sum(sizes), tuple(Digest(d) for d in corrupt), tuple(strays))


def _check_chunk(jobs: Sequence[tuple[str, str, int, int]]) -> list[bool]:
    out: list[bool] = []
    for d, path, offset, length in jobs:
        try:
            if offset < 0:
                out.append(hash_file(path) == d)
            else:
                out.append(hash_bytes(read_slot(Slot(path, offset, length))) == d)
        except OSError:
            out.append(False)
    return out
