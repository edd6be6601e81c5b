"""The cache's pack files: many small objects in one file, each still addressable.

Creating 50,000 object files costs 50,000 inodes, directory entries and
renames, and a ``syncfs`` that must write all that metadata back: most of a
first ``canon apply`` of a many-small-files dataset. Git answers with packs, and
so does the cache: a batch of small objects is written as one file, plus an
index saying where each lies. Same format as a remote's packs
(``canon.stores.packs``), so the two read alike::

    .canon/cache/packs/<P>.pack    b"canon-pack 1\\n" + object bytes back to back
    .canon/cache/packs/<P>.idx     its index (sorted "hex offset length" lines, "end N")

``<P>`` is the sha256 of the pack's layout (``pack_name``), which fixes its bytes:
a pack is immutable.

Invariants (RELIABILITY.md 1 and 2): a pack is written to ``tmp/``, made durable,
renamed into ``packs/``, and only then is its index written (temp + rename).
Objects are seen only through indexes, so an object becomes visible exactly
when its complete pack already is. A crash leaves at worst a pack with no index
(invisible; ``prune_orphans`` removes it). Every read re-hashes the object: an
index or pack that lies gives ``IntegrityError``, never wrong bytes.

Removal is by rewriting: ``drop`` writes a new pack of the survivors (each
re-verified), its index, then removes the old index and, last, the old pack.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from canon.digest import PREFIX, Digest, hex_of
from canon.stores.fsops import syncfs, unlink, write_all
from canon.stores.packs import PACK_MAGIC, PackEntry, PackIndex

PACK_MODE = 0o444
# A tree or batch with fewer new small objects than this stays loose: a pack per
# two-file output would only multiply index files.
PACK_MIN_OBJECTS = 64
_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW


class Slot(NamedTuple):
    """Where one packed object lies."""

    pack: str  # path of the .pack file
    offset: int
    length: int


class Packed(NamedTuple):
    """One packed object, as listed for verification and garbage collection."""

    digest: Digest
    slot: Slot
    mtime: float  # the pack's mtime


class PackSet:
    """The packs under ``root`` (``.canon/cache/packs``): a lazily loaded index of
    every pack's entries, reloaded when the directory changes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._where: dict[str, Slot] = {}
        self._stamp: int | None = None  # mtime_ns of root when loaded (None: never)

    # -- reading -----------------------------------------------------------------------

    def locate(self, hexd: str) -> Slot | None:
        """Where the object with sha256 ``hexd`` is packed, or ``None``."""
        if self._stamp is None:
            self._load()
        slot = self._where.get(hexd)
        if slot is None and self._stale():
            self._load()
            slot = self._where.get(hexd)
        return slot

    def locate_many(self, hexes: Iterable[str]) -> set[str]:
        """Which of ``hexes`` are packed (one staleness check for the lot)."""
        if self._stamp is None or self._stale():
            self._load()
        where = self._where
        return {h for h in hexes if h in where}

    def entries(self) -> list[Packed]:
        """Every packed object (after a fresh load)."""
        self._load()
        mtimes: dict[str, float] = {}
        out = []
        for hexd, slot in sorted(self._where.items()):
            if slot.pack not in mtimes:
                try:
                    mtimes[slot.pack] = os.stat(slot.pack).st_mtime
                except OSError:
                    mtimes[slot.pack] = 0.0
            out.append(Packed(Digest(PREFIX + hexd), slot, mtimes[slot.pack]))
        return out

    def _stale(self) -> bool:
        try:
            return os.stat(self.root).st_mtime_ns != self._stamp
        except FileNotFoundError:
            return self._stamp != -1

    def _load(self) -> None:
        where: dict[str, Slot] = {}
        try:
            stamp = os.stat(self.root).st_mtime_ns
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            self._where, self._stamp = where, -1
            return
        for name in names:
            if not name.endswith(".idx"):
                continue
            pack = name[: -len(".idx")]
            try:
                data = Path(self.root, name).read_bytes()
            except OSError:
                continue  # removed under us (gc): its objects are elsewhere or gone
            pack_path = str(self.root / (pack + ".pack"))
            for hexd, offset, length in _read_index(data, pack):
                where.setdefault(hexd, Slot(pack_path, offset, length))
        self._where, self._stamp = where, stamp

    # -- writing -----------------------------------------------------------------------

    def publish(self, staged: Sequence[StagedPack]) -> None:
        """Make staged packs (durable temp files: the caller ran ``syncfs``) visible:
        each pack renamed into place, then its index written. The caller syncs after."""
        if not staged:
            return
        fresh = self._stamp is not None and not self._stale()
        self.root.mkdir(parents=True, exist_ok=True)
        for sp in staged:
            final = self.root / (sp.pack_index.pack + ".pack")
            os.replace(sp.tmp, final)  # same name = same bytes: replacing is harmless
            _write_index(self.root, sp.pack_index)
            for e in sp.pack_index.entries:
                self._where.setdefault(hex_of(e.digest), Slot(str(final), e.offset, e.length))
        # Up to date before these packs: still up to date, with them (no reload of every
        # index for the next lookup). Otherwise the next miss reloads.
        self._stamp = os.stat(self.root).st_mtime_ns if fresh else None

    # -- removing ----------------------------------------------------------------------

    def drop(self, doomed: set[str], tmp_dir: Path) -> int:
        """Remove the objects whose hex digests are in ``doomed`` from every pack
        holding any: survivors are copied (verified) into a new pack first. Bytes
        freed (pack sizes). Survivors that fail verification are left out too (they
        were corrupt) and counted in the return value's pack sizes."""
        self._load()
        by_pack: dict[str, list[tuple[str, Slot]]] = {}
        for hexd, slot in self._where.items():
            by_pack.setdefault(slot.pack, []).append((hexd, slot))
        freed = 0
        for pack, members in sorted(by_pack.items()):
            if not any(h in doomed for h, _ in members):
                continue
            keep = [(h, s) for h, s in members if h not in doomed]
            if keep:
                staged = write_pack_from_slots(keep, tmp_dir)
                if staged is not None:
                    syncfs(tmp_dir)
                    self.publish([staged])
                    syncfs(self.root)  # the survivors durable before their old pack goes
            idx = pack[: -len(".pack")] + ".idx"
            with contextlib.suppress(OSError):
                freed += os.stat(pack).st_size
            unlink(idx)  # index first: its objects stop being visible here
            unlink(pack)
        self._stamp = None
        return freed

    def prune_orphans(self, older_than_s: float) -> int:
        """Remove packs with no index (a writer died between the two) older than
        ``older_than_s``; how many."""
        n = 0
        cutoff = time.time() - older_than_s
        try:
            names = set(os.listdir(self.root))
        except FileNotFoundError:
            return 0
        for name in names:
            if name.endswith(".pack") and name[: -len(".pack")] + ".idx" not in names:
                path = self.root / name
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        n += 1
        return n


class StagedPack(NamedTuple):
    """A complete pack in a temp file, and its index."""

    tmp: str
    pack_index: PackIndex


# -- pack writers (run in worker processes: module level, plain data) -------------------


class PackWriter:
    """Appends objects to a new temp pack file, hashing the pack as it goes."""

    def __init__(self, tmp_dir: str) -> None:
        self.fd, self.tmp = tempfile.mkstemp(prefix="pack-", suffix=".tmp", dir=tmp_dir)
        self._size = len(PACK_MAGIC)
        self._entries: list[PackEntry] = []
        write_all(self.fd, memoryview(PACK_MAGIC))

    def add(self, d: Digest, data: bytes | memoryview) -> None:
        """Append ``data``, which the caller has checked hashes to ``d``."""
        self._entries.append(PackEntry(d, self._size, len(data)))
        write_all(self.fd, memoryview(data))
        self._size += len(data)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._size

    def close(self) -> None:
        """Finish writing (read-only from now on); the layout is the caller's to keep."""
        os.fchmod(self.fd, PACK_MODE)
        os.close(self.fd)

    def finish(self) -> StagedPack:
        self.close()
        unique = {e.digest: e for e in reversed(self._entries)}  # first copy of a duplicate
        entries = tuple(sorted(unique.values()))
        return StagedPack(self.tmp, PackIndex(pack_name(self._entries), self._size, entries))

    def abandon(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        unlink(self.tmp)


def pack_name(entries: Sequence[PackEntry]) -> str:
    """A local pack's name: the sha256 of its layout (each object's digest, offset and
    length, in pack order). Objects are content-addressed, so the layout fixes every
    byte of the pack: equal names mean equal packs, without hashing the pack's bytes
    a second time (each object was hashed as it was read)."""
    h = hashlib.sha256(PACK_MAGIC)
    for e in entries:
        h.update(f"{e.digest} {e.offset} {e.length}\n".encode())
    return h.hexdigest()


def read_slot(slot: Slot) -> bytes:
    """The bytes at ``slot`` (not verified: callers hash them). ``OSError`` as is;
    a short read (a truncated pack) is ``OSError(EIO)``."""
    fd = os.open(slot.pack, _READ)
    try:
        data = os.pread(fd, slot.length, slot.offset)
    finally:
        os.close(fd)
    if len(data) != slot.length:
        raise OSError(5, "the pack is shorter than its index says", slot.pack)
    return data


def write_pack_from_slots(members: Iterable[tuple[str, Slot]], tmp_dir: Path) -> StagedPack | None:
    """A new staged pack holding the objects at ``members`` that verify (None if none do)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    writer = PackWriter(str(tmp_dir))
    try:
        for hexd, slot in members:
            try:
                data = read_slot(slot)
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == hexd:
                writer.add(Digest(PREFIX + hexd), data)
    except BaseException:
        writer.abandon()
        raise
    if not len(writer):
        writer.abandon()
        return None
    return writer.finish()


def _write_index(root: Path, index: PackIndex) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".idx-", suffix=".tmp", dir=root)
    try:
        write_all(fd, memoryview(index.render()))
        os.fchmod(fd, PACK_MODE)
    finally:
        os.close(fd)
    os.replace(tmp, root / (index.pack + ".idx"))


def _read_index(data: bytes, pack: str) -> list[tuple[str, int, int]]:
    """The entries of a local index, or none if it is not a whole index of ``pack``.

    Lighter than ``PackIndex.parse`` (this one is ours, written by rename after its
    pack; every object read is re-hashed anyway): the header, the pack line and the
    ``end`` count are checked, so a truncated index hides its pack instead of half of
    it."""
    try:
        lines = data.decode("ascii").split("\n")
    except UnicodeDecodeError:
        return []
    if len(lines) < 4 or lines[-1] or lines[0] != "canon-pack-index 1":
        return []
    head = lines[1].split(" ")
    tail = lines[-2].split(" ")
    body = lines[2:-2]
    if len(head) != 3 or head[:2] != ["pack", pack] or tail != ["end", str(len(body))]:
        return []
    out = []
    try:
        size = int(head[2])
        for line in body:
            hexd, off, ln = line.split(" ")
            offset, length = int(off), int(ln)
            if len(hexd) != 64 or offset < len(PACK_MAGIC) or offset + length > size:
                return []
            out.append((hexd, offset, length))
    except ValueError:
        return []
    return out
