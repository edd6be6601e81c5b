"""A directory's manifest: every file's path, size, mode and digest, as bytes.

The serialised form is UTF-8 text, one line per regular file::

    {mode:o} {size} {hex} {path}\\n        e.g.  644 5120 9f86d0…0a08 train/part-0001.csv

sorted by the path's UTF-8 bytes, with no header and no trailing data. The
directory's digest is the sha256 of exactly these bytes, so a manifest is stored
in the object store like any other object, and equal trees have equal digests
on every machine. Modes are normalised to ``644`` or ``755`` by the owner's
exec bit (as Git does): umask, group bits and ownership are not content.
Empty directories are not recorded (a tree is its files).

Invariants of a ``Manifest`` value, checked both when building one from a walk
and when parsing untrusted bytes:

- paths are relative POSIX paths: non-empty, no leading ``/``, no empty, ``.``
  or ``..`` component, no NUL, newline or carriage return, valid UTF-8;
- entries are strictly sorted (hence unique) by UTF-8 bytes — for valid
  Unicode, Python's code-point order on ``str`` is the same order;
- no path is both a file and a directory (``a`` and ``a/b``);
- ``parse(data).to_bytes() == data``: one tree has exactly one spelling.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import NamedTuple

from canon.digest import PREFIX, Digest, hash_bytes, hex_of, is_digest
from canon.errors import PathError, StateError

MODE_FILE = 0o644
MODE_EXEC = 0o755
_MODES = {"644": MODE_FILE, "755": MODE_EXEC}
_HEX = frozenset("0123456789abcdef")


def normal_mode(st_mode: int) -> int:
    """``0o755`` if the owner may execute, else ``0o644``."""
    return MODE_EXEC if st_mode & stat.S_IXUSR else MODE_FILE


class ManifestEntry(NamedTuple):
    """One regular file of a tree (a NamedTuple: trees have 10^5 of these)."""

    path: str  # relative POSIX path inside the tree
    size: int
    mode: int  # MODE_FILE or MODE_EXEC
    digest: Digest


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a manifest path, or ``None`` if it can."""
    if not path:
        return "empty path"
    if "\x00" in path:
        return "contains a NUL byte"
    if "\n" in path or "\r" in path:
        return "contains a line break"
    if path.startswith("/"):
        return "is absolute"
    for part in path.split("/"):
        if not part:
            return "has an empty component"
        if part in (".", ".."):
            return f"has a {part!r} component"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


class Manifest:
    """An immutable, validated, sorted list of ``ManifestEntry``."""

    def __init__(self, entries: tuple[ManifestEntry, ...], *, _checked: bool = False) -> None:
        if not _checked:
            raise TypeError("use Manifest.build(...) or Manifest.parse(...)")
        self._entries = entries

    # -- construction --------------------------------------------------------------

    @classmethod
    def build(cls, entries: Iterable[ManifestEntry], *, where: str = "") -> Manifest:
        """A manifest of ``entries`` (any order). ``PathError`` naming the path for a
        path that cannot be stored (line break, NUL, not UTF-8, ``..``, …) or for
        a duplicate; modes are normalised by the exec bit. ``where`` (the tree's
        workspace path) prefixes paths in error messages."""
        at = where.rstrip("/") + "/" if where else ""
        items = sorted(entries)
        plain = _all_plain([e.path for e in items])
        out: list[ManifestEntry] = []
        prev: str | None = None
        for e in items:
            problem = None if plain else path_problem(e.path)
            if problem is not None:
                raise PathError(
                    f"cannot record {at + e.path!r}: the file name {problem}",
                    hint="rename the file; canon records plain relative paths only",
                )
            if e.path == prev:
                raise PathError(f"{at + e.path!r} appears twice in one directory")
            if e.size < 0:
                raise StateError(f"{at + e.path!r}: negative size {e.size}")
            prev = e.path
            mode = e.mode if e.mode in (MODE_FILE, MODE_EXEC) else normal_mode(e.mode)
            out.append(e if mode == e.mode else e._replace(mode=mode))
        bad = next((e for e in out if not is_digest(e.digest)), None)
        if bad is not None:
            raise StateError(f"{at + bad.path!r}: {bad.digest[:80]!r} is not a digest")
        conflict = _file_dir_conflict(out)
        if conflict is not None:
            raise PathError(f"{at + conflict!r} is both a file and a directory")
        return cls(tuple(out), _checked=True)

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        """The manifest serialised in ``data``; ``StateError`` for anything that is
        not exactly what ``to_bytes`` would write (data comes from caches and
        remotes: it is untrusted)."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StateError(f"manifest is not UTF-8 (byte {exc.start})") from exc
        if text and not text.endswith("\n"):
            raise StateError("manifest does not end with a newline (truncated?)")
        entries: list[ManifestEntry] = []
        prev: str | None = None
        for lineno, line in enumerate(text.split("\n")[:-1], start=1):
            entry = _parse_line(line, lineno)
            if prev is not None and entry.path <= prev:
                what = "duplicate" if entry.path == prev else "unsorted"
                raise StateError(f"manifest line {lineno}: {what} path {entry.path!r}")
            prev = entry.path
            entries.append(entry)
        conflict = _file_dir_conflict(entries)
        if conflict is not None:
            raise StateError(f"manifest: {conflict!r} is both a file and a directory")
        return cls(tuple(entries), _checked=True)

    # -- views ---------------------------------------------------------------------

    @property
    def entries(self) -> tuple[ManifestEntry, ...]:
        return self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[ManifestEntry]:
        return iter(self._entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and self._entries == other._entries

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"Manifest({len(self)} files, {self.size} bytes, {self.digest})"

    @cached_property
    def size(self) -> int:
        """Total bytes of all files."""
        return sum(e.size for e in self._entries)

    @cached_property
    def digest(self) -> Digest:
        """sha256 of ``to_bytes()``: the directory's digest."""
        return hash_bytes(self.to_bytes())

    def to_bytes(self) -> bytes:
        return self._bytes

    @cached_property
    def _bytes(self) -> bytes:
        return "".join(
            [f"{e.mode:o} {e.size} {hex_of(e.digest)} {e.path}\n" for e in self._entries]
        ).encode("utf-8")


def _parse_line(line: str, lineno: int) -> ManifestEntry:
    parts = line.split(" ", 3)
    if len(parts) != 4:
        raise StateError(f"manifest line {lineno}: expected 'mode size sha256 path'")
    mode_s, size_s, hex_s, path = parts
    mode = _MODES.get(mode_s)
    if mode is None:
        raise StateError(f"manifest line {lineno}: mode {mode_s!r} is not 644 or 755")
    if not size_s.isascii() or not size_s.isdigit() or (size_s != "0" and size_s[0] == "0"):
        raise StateError(f"manifest line {lineno}: size {size_s[:30]!r} is not a number")
    if len(hex_s) != 64 or not _HEX.issuperset(hex_s):
        raise StateError(f"manifest line {lineno}: {hex_s[:70]!r} is not a sha256 hex digest")
    problem = path_problem(path)
    if problem is not None:
        raise StateError(f"manifest line {lineno}: path {path[:200]!r} {problem}")
    return ManifestEntry(path, int(size_s), mode, Digest(PREFIX + hex_s))


_BAD_IN_LIST = ("\n\n", "\n/", "//", "/\n", "\n./", "/./", "/.\n", "\n../", "/../", "/..\n")


def _all_plain(paths: list[str]) -> bool:
    """``path_problem(p) is None`` for every path, checked with a few C-speed scans
    of all paths joined (a 50,000-file tree costs ~5 ms instead of ~60 ms);
    ``False`` means "check each path" (to name the bad one)."""
    if not paths:
        return True
    blob = "\n".join(paths)
    if blob.count("\n") != len(paths) - 1 or "\x00" in blob or "\r" in blob:
        return False
    wrapped = "\n" + blob + "\n"  # every path now sits between two newlines
    if any(bad in wrapped for bad in _BAD_IN_LIST) or "\n.\n" in wrapped or "\n..\n" in wrapped:
        return False
    try:
        blob.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _file_dir_conflict(entries: Iterable[ManifestEntry]) -> str | None:
    """A path that is both a file and the parent of another entry, if any."""
    files = {e.path for e in entries}
    for p in files:
        cut = p.rfind("/")
        while cut > 0:
            parent = p[:cut]
            if parent in files:
                return parent
            cut = parent.rfind("/")
    return None
