"""A dataset source's index: every file's path, size and version token.

When a dataset is pinned, canon stores one of these next to the content's
manifest (as an object in the object store; the lock names its digest). The
version token is what the source itself says about a file without reading
it: an S3 ETag, a GCS generation or md5, an mtime for a plain filesystem, the
sha256 for a workspace path. Comparing a fresh listing with the pinned index
tells which files were added, removed or changed — one listing pass, no
per-object request, nothing downloaded (issue 3: "data status against 50,000
objects: one listing").

Serialised form (UTF-8, one line per file, sorted by path's UTF-8 bytes)::

    canon-source-index/1\\n
    {size} {version} {path}\\n

The version never contains whitespace (any is replaced by ``_``). Like a
manifest, the same listing always gives the same bytes, so an unchanged
source gives the same index digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import NamedTuple

from canon.digest import Digest, hash_bytes
from canon.errors import StateError
from canon.stores.manifest import Manifest, path_problem

__all__ = ["Drift", "IndexEntry", "SourceIndex"]

_HEADER = "canon-source-index/1\n"


class IndexEntry(NamedTuple):
    path: str  # relative POSIX path inside the source ("" never: a single file is its basename)
    size: int
    version: str  # ETag / generation / mtime_ns / sha256: changes when the file does


def _token(version: str) -> str:
    return "_".join(version.strip().strip('"').split()) or "-"


@dataclass(frozen=True)
class Drift:
    """How a source differs from its pin (paths sorted)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    note: str | None = None  # e.g. "pinned index not in the cache: counts unknown"

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.note)

    def summary(self, limit: int = 5) -> str:
        """``2 added (a.csv, b.csv), 1 changed (c.csv)``; at most ``limit`` names each."""
        parts = []
        for what, names in (
            ("added", self.added),
            ("removed", self.removed),
            ("changed", self.changed),
        ):
            if names:
                shown = ", ".join(names[:limit])
                more = f", … {len(names) - limit} more" if len(names) > limit else ""
                parts.append(f"{len(names)} {what} ({shown}{more})")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts) or "no difference"

    def to_dict(self, limit: int = 100) -> dict[str, object]:
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "changed": len(self.changed),
            "added_files": list(self.added[:limit]),
            "removed_files": list(self.removed[:limit]),
            "changed_files": list(self.changed[:limit]),
            "note": self.note,
        }


@dataclass(frozen=True)
class SourceIndex:
    entries: tuple[IndexEntry, ...] = field(default_factory=tuple)

    @classmethod
    def build(cls, entries: Iterable[IndexEntry]) -> SourceIndex:
        items = sorted(IndexEntry(e.path, e.size, _token(e.version)) for e in entries)
        for a, b in pairwise(items):
            if a.path == b.path:
                raise StateError(f"the source lists {a.path!r} twice")
        return cls(tuple(items))

    @classmethod
    def of_manifest(cls, manifest: Manifest) -> SourceIndex:
        """The index of a workspace tree: the version token is the file's sha256."""
        return cls.build(IndexEntry(e.path, e.size, e.digest[7:]) for e in manifest)

    @classmethod
    def parse(cls, data: bytes) -> SourceIndex:
        """The index serialised in ``data`` (from the cache: untrusted)."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StateError("source index is not UTF-8") from exc
        if not text.startswith(_HEADER) or not text.endswith("\n"):
            raise StateError("not a canon source index (bad header or truncated)")
        entries = []
        for lineno, line in enumerate(text[len(_HEADER) :].split("\n")[:-1], start=2):
            parts = line.split(" ", 2)
            if len(parts) != 3 or not parts[0].isdigit() or path_problem(parts[2]):
                raise StateError(f"source index line {lineno} is malformed")
            entries.append(IndexEntry(parts[2], int(parts[0]), parts[1]))
        if entries != sorted(entries):
            raise StateError("source index is not sorted")
        return cls(tuple(entries))

    def __iter__(self) -> Iterator[IndexEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def to_bytes(self) -> bytes:
        return self._bytes

    @cached_property
    def _bytes(self) -> bytes:
        body = "".join(f"{e.size} {e.version} {e.path}\n" for e in self.entries)
        return (_HEADER + body).encode("utf-8")

    @cached_property
    def digest(self) -> Digest:
        return hash_bytes(self.to_bytes())

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    def drift_to(self, now: SourceIndex) -> Drift:
        """What changed from this (pinned) index to ``now`` (a fresh listing)."""
        then = {e.path: (e.size, e.version) for e in self.entries}
        seen = {e.path: (e.size, e.version) for e in now.entries}
        return Drift(
            added=tuple(sorted(p for p in seen if p not in then)),
            removed=tuple(sorted(p for p in then if p not in seen)),
            changed=tuple(sorted(p for p, v in seen.items() if p in then and then[p] != v)),
        )


def manifest_drift(pinned: bytes, now: Manifest) -> Drift:
    """Added / removed / changed files from the pinned manifest's bytes (verified by
    their digest) to ``now``. Only the lines that differ are looked at: ten changed
    files in 50,000 cost ten parsed lines, not two sorted indexes. A file whose
    mode, size or content changed is "changed"."""
    then_lines = set(pinned.split(b"\n"))
    now_lines = set(now.to_bytes().split(b"\n"))
    then = {_line_path(x) for x in then_lines - now_lines if x}
    seen = {_line_path(x) for x in now_lines - then_lines if x}
    return Drift(
        added=tuple(sorted(seen - then)),
        removed=tuple(sorted(then - seen)),
        changed=tuple(sorted(seen & then)),
    )


def _line_path(line: bytes) -> str:
    parts = line.split(b" ", 3)
    if len(parts) != 4:
        raise StateError("a manifest line is not 'mode size sha256 path'")
    try:
        return parts[3].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StateError("a manifest path is not UTF-8") from exc
