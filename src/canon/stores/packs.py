"""Pack files: many small objects in one remote object, each still addressable.

Why. An object store answers a few hundred requests a second (moto's S3
server ~400/s; real S3 throttles per prefix), so one request per small file
bounds a 50,000-file push at minutes whatever the client does (DVC: ~118 s).
git and restic solve this with packs; canon does the same.

Layout of a remote (under its URL)::

    objects/ab/cdef…            a whole object (big files; anything pushed whole)
    packs/<P>.pack              a pack: the header line, then objects back to back
    packs/<P>.idx               its index, written only after the pack is complete

``<P>`` is the sha256 hex of the pack's bytes: packs are content-addressed
like everything else, so a pack is immutable and re-uploading it is harmless.

The pack format::

    b"canon-pack 1\\n" + object bytes + object bytes + …

The index format (UTF-8 text, one entry per line, sorted by digest)::

    canon-pack-index 1
    pack <P> <pack size>
    <object hex> <offset> <length>      (one per object, strictly sorted by hex)
    end <entry count>

Invariants, checked by ``PackIndex.parse`` on every index read (indexes come
from remotes: untrusted): the header and the ``pack`` line name the pack the
file is named after; entries are strictly sorted (so unique), lie inside the
pack after the header and do not overlap; the ``end`` line counts them (a
truncated index is refused, never half-used).

Visibility (RELIABILITY.md invariant 1 and 2): a pack is uploaded first, under
its final name (an S3 PUT or a temp + rename on disk is all-or-nothing); its
index second. Readers only look at objects through indexes, so an object in a
pack becomes visible exactly when its index does — by then the pack is
complete. A pack without an index (a push killed in between) is invisible and
the next push writes it again under the same name (same bytes, same name).
Every object read out of a pack is re-hashed before it enters the cache: an
index that lies, a bit flip in transit or on the remote is an
``IntegrityError``, never a bad object in the cache.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from canon.digest import PREFIX, Digest, hex_of
from canon.errors import StateError

PACK_MAGIC = b"canon-pack 1\n"
INDEX_MAGIC = "canon-pack-index 1"
# Bytes of objects per pack before a new one is started (CANON_PACK_TARGET: tests
# use small packs to get many of them from little data).
PACK_TARGET = int(os.environ.get("CANON_PACK_TARGET", 16 << 20))
SMALL_OBJECT = 2 << 20  # objects up to this size go into packs; larger ones stay whole
_HEX = frozenset("0123456789abcdef")


class PackEntry(NamedTuple):
    digest: Digest
    offset: int
    length: int


@dataclass(frozen=True)
class PackIndex:
    """Where each object of one pack lies in it."""

    pack: str  # the pack's sha256 hex (its name)
    size: int  # the pack's size in bytes
    entries: tuple[PackEntry, ...]

    def render(self) -> bytes:
        lines = [INDEX_MAGIC, f"pack {self.pack} {self.size}"]
        lines += [f"{hex_of(e.digest)} {e.offset} {e.length}" for e in self.entries]
        lines.append(f"end {len(self.entries)}")
        return ("\n".join(lines) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes, pack: str) -> PackIndex:
        """The index of pack ``pack`` in ``data``; ``StateError`` unless it is exactly
        what ``render`` writes for that pack."""
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError as exc:
            raise _bad(pack, "not ASCII") from exc
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or lines[0] != INDEX_MAGIC:
            raise _bad(pack, "bad header or truncated")
        head = lines[1].split(" ")
        if len(head) != 3 or head[0] != "pack" or head[1] != pack or not _is_int(head[2]):
            raise _bad(pack, "the pack line does not name this pack")
        size = int(head[2])
        tail = lines[-2].split(" ")
        body = lines[2:-2]
        if len(tail) != 2 or tail[0] != "end" or not _is_int(tail[1]) or int(tail[1]) != len(body):
            raise _bad(pack, "truncated (the end line is missing or wrong)")
        entries: list[PackEntry] = []
        prev = ""
        spans: list[tuple[int, int]] = []
        for n, line in enumerate(body, start=3):
            parts = line.split(" ")
            if len(parts) != 3 or len(parts[0]) != 64 or not _HEX.issuperset(parts[0]):
                raise _bad(pack, f"line {n} is not 'hex offset length'")
            if not (_is_int(parts[1]) and _is_int(parts[2])):
                raise _bad(pack, f"line {n}: offset and length must be numbers")
            hexd, offset, length = parts[0], int(parts[1]), int(parts[2])
            if hexd <= prev:
                raise _bad(pack, f"line {n}: entries are not strictly sorted")
            if offset < len(PACK_MAGIC) or offset + length > size:
                raise _bad(pack, f"line {n}: the entry lies outside the pack")
            prev = hexd
            spans.append((offset, offset + length))
            entries.append(PackEntry(Digest(PREFIX + hexd), offset, length))
        spans.sort()
        if any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
            raise _bad(pack, "entries overlap")
        return cls(pack, size, tuple(entries))


class PackBuilder:
    """Builds one pack in memory: ``add`` objects, then ``finish``.

    Memory is bounded by ``PACK_TARGET`` plus one object (objects over
    ``SMALL_OBJECT`` never go into packs)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = [PACK_MAGIC]
        self._size = len(PACK_MAGIC)
        self._entries: list[PackEntry] = []
        self._seen: set[str] = set()

    @property
    def full(self) -> bool:
        return self._size - len(PACK_MAGIC) >= PACK_TARGET

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._size

    def add(self, d: Digest, data: bytes) -> None:
        if d in self._seen:
            return
        self._seen.add(d)
        self._entries.append(PackEntry(d, self._size, len(data)))
        self._parts.append(data)
        self._size += len(data)

    def finish(self) -> tuple[bytes, PackIndex]:
        """The pack's bytes and its index (the pack is named by its own hash)."""
        data = b"".join(self._parts)
        name = hashlib.sha256(data).hexdigest()
        entries = tuple(sorted(self._entries, key=lambda e: e.digest))
        return data, PackIndex(name, len(data), entries)


def plan_packs(sizes: Iterable[tuple[Digest, int]]) -> list[list[Digest]]:
    """Group small objects into packs of about ``PACK_TARGET`` bytes, in the order given
    (the caller sorts: objects of one directory end up together, which keeps
    reads of a later pull sequential)."""
    groups: list[list[Digest]] = [[]]
    filled = 0
    for d, size in sizes:
        if filled >= PACK_TARGET:
            groups.append([])
            filled = 0
        groups[-1].append(d)
        filled += size
    return [g for g in groups if g]


class Window(NamedTuple):
    """One ranged read of a pack: bytes ``[start, end)`` holding ``entries``."""

    start: int
    end: int
    entries: tuple[PackEntry, ...]


def read_windows(
    entries: Sequence[PackEntry], *, max_gap: int = 1 << 20, max_size: int = PACK_TARGET
) -> Iterator[Window]:
    """Coalesce the wanted ``entries`` of one pack into few ranged reads: neighbours
    closer than ``max_gap`` share a read, and no read is longer than ``max_size``
    (unless one object alone is), so memory stays bounded."""
    todo = sorted(entries, key=lambda e: e.offset)
    i = 0
    while i < len(todo):
        start = todo[i].offset
        end = start + todo[i].length
        j = i + 1
        while j < len(todo):
            nxt = todo[j]
            nxt_end = nxt.offset + nxt.length
            if nxt.offset - end > max_gap or nxt_end - start > max_size:
                break
            end = max(end, nxt_end)
            j += 1
        yield Window(start, end, tuple(todo[i:j]))
        i = j


def _is_int(s: str) -> bool:
    return s.isascii() and s.isdigit() and (s == "0" or s[0] != "0")


def _bad(pack: str, why: str) -> StateError:
    return StateError(
        f"the index of pack {pack[:16]}… on the remote is damaged: {why}",
        hint="run `canon push` from a machine that has the objects, then `canon gc -r REMOTE`",
    )
