"""What a remote holds, from one listing, plus the local record of what it held.

``Catalog.load(remote, record_dir)`` lists ``packs/`` and ``objects/`` once
(paginated listings, never a request per object) and reads the index of every
*complete* pack — one whose ``.pack`` and ``.idx`` are both listed. Indexes are
immutable (a pack is named by its own hash), so each is downloaded once and
kept in ``record_dir/idx/``; a cached index that does not parse is fetched
again. The result answers ``locate(digest)``: a whole object's key, or the
pack, offset and length holding it.

The *record* (``record_dir/state.json``) remembers, for a fingerprint of the
listing, which lock roots (files and directory manifests) were known to be
complete on the remote. A push whose roots are all in the record, against a
remote whose listing still has that fingerprint, has nothing to do and reads
no index at all: that is what makes a no-op push cheap. The record is only an
optimisation for push; pull never trusts it (it checks the cache itself and
every byte it downloads).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from canon.digest import PREFIX, Digest
from canon.errors import StateError
from canon.stores.atomic import atomic_write
from canon.stores.packs import PackIndex
from canon.stores.remotes import shareable
from canon.stores.remotes.protocol import OBJECTS, PACKS, Remote, RemoteFile, index_key

_HEX = frozenset("0123456789abcdef")


class Location(NamedTuple):
    key: str  # the remote key holding the bytes
    offset: int  # 0 for a whole object
    length: int
    pack: str | None  # the pack's name, or None for a whole object


@dataclass
class Catalog:
    remote: Remote
    record_dir: Path
    packs: dict[str, RemoteFile] = field(default_factory=dict)  # complete packs by name
    where: dict[Digest, Location] = field(default_factory=dict)
    fingerprint: str = ""
    indexes_read: bool = False
    _listing: dict[str, RemoteFile] = field(default_factory=dict)

    # -- reading the remote ---------------------------------------------------------

    @classmethod
    def list_only(cls, remote: Remote, record_dir: Path) -> Catalog:
        """One listing (``packs/`` and ``objects/``); whole objects are located,
        packed ones only after ``read_indexes``."""
        cat = cls(remote, record_dir)
        if shareable(remote) is not None:  # a directory: walked here, nothing to wait for
            listing = {**remote.list(PACKS), **remote.list(OBJECTS)}
        else:  # a server: both listings in flight at once (a no-op push waits for one)
            with ThreadPoolExecutor(max_workers=2) as pool:
                packs, objects = pool.map(remote.list, (PACKS, OBJECTS))
            listing = {**packs, **objects}
        cat._listing = listing
        cat.fingerprint = _fingerprint(listing)
        names: dict[str, set[str]] = {}
        for key, info in listing.items():
            if key.startswith(OBJECTS):
                d = _object_digest(key)
                if d is not None:
                    cat.where[d] = Location(key, 0, info.size, None)
            elif key.startswith(PACKS):
                stem, _, ext = key[len(PACKS) :].rpartition(".")
                if len(stem) == 64 and _HEX.issuperset(stem) and ext in ("pack", "idx"):
                    names.setdefault(stem, set()).add(ext)
        cat.packs = {
            p: listing[f"{PACKS}{p}.pack"] for p, exts in names.items() if exts == {"pack", "idx"}
        }
        return cat

    @classmethod
    def load(cls, remote: Remote, record_dir: Path, *, jobs: int = 8) -> Catalog:
        cat = cls.list_only(remote, record_dir)
        cat.read_indexes(jobs=jobs)
        return cat

    def read_indexes(self, *, jobs: int = 8) -> None:
        """Read every complete pack's index (cached ones from disk, the rest in parallel)."""
        if self.indexes_read:
            return
        cache = self.record_dir / "idx"
        indexes: list[PackIndex] = []
        missing: list[str] = []
        for pack in sorted(self.packs):
            idx = _read_cached(cache / f"{pack}.idx", pack)
            if idx is None:
                missing.append(pack)
            else:
                indexes.append(idx)

        def fetch(pack: str) -> PackIndex:
            data = self.remote.get_bytes(index_key(pack))
            idx = PackIndex.parse(data, pack)  # StateError if damaged: never cached
            with contextlib.suppress(OSError):
                atomic_write(cache / f"{pack}.idx", data)
            return idx

        if missing:
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                indexes.extend(pool.map(fetch, missing))
        for idx in indexes:
            if idx.size != self.packs[idx.pack].size:
                continue  # index and pack disagree: treat the pack as absent
            key = f"{PACKS}{idx.pack}.pack"
            for e in idx.entries:
                self.where.setdefault(e.digest, Location(key, e.offset, e.length, idx.pack))
        self.indexes_read = True

    def has(self, d: Digest) -> bool:
        return d in self.where

    def locate(self, d: Digest) -> Location | None:
        return self.where.get(d)

    @property
    def listing(self) -> Mapping[str, RemoteFile]:
        return self._listing

    # -- the local record -------------------------------------------------------------

    def complete_roots(self) -> frozenset[str]:
        """Roots recorded as complete on the remote, if the listing is unchanged."""
        try:
            state = json.loads((self.record_dir / "state.json").read_bytes())
            if state.get("fingerprint") == self.fingerprint:
                return frozenset(str(r) for r in state.get("complete", ()))
        except (OSError, ValueError, AttributeError, TypeError):
            pass
        return frozenset()

    def remember(self, fingerprint: str, complete: Iterable[str]) -> None:
        """Record that the remote, listed as ``fingerprint``, holds ``complete`` roots."""
        doc = {"fingerprint": fingerprint, "complete": sorted(set(complete))}
        with contextlib.suppress(OSError):
            atomic_write(self.record_dir / "state.json", json.dumps(doc).encode())


def record_dir_for(state_dir: Path, remote: Remote) -> Path:
    """Where the local record of ``remote`` lives (``.canon/remotes/<hash of its URL>``)."""
    name = hashlib.sha256(remote.display.encode()).hexdigest()[:20]
    return state_dir / "remotes" / name


def _read_cached(path: Path, pack: str) -> PackIndex | None:
    try:
        return PackIndex.parse(path.read_bytes(), pack)
    except (OSError, StateError):
        return None


def _object_digest(key: str) -> Digest | None:
    rest = key[len(OBJECTS) :]
    if len(rest) != 65 or rest[2] != "/":
        return None
    hexd = rest[:2] + rest[3:]
    return Digest(PREFIX + hexd) if _HEX.issuperset(hexd) else None


def _fingerprint(listing: Mapping[str, RemoteFile]) -> str:
    h = hashlib.sha256()
    for key in sorted(listing):
        h.update(f"{key}\0{listing[key].size}\n".encode())
    return h.hexdigest()
