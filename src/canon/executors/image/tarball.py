"""Deterministic layers: the same entries always give the same bytes.

A layer is a tar archive compressed with gzip (``tar+gzip``, image-spec
``layer.md``). What would make two builds of the same content differ, and how
each is fixed:

- entry order: entries are written sorted by path, parents before children
  (missing parent directories are added);
- timestamps: every entry's mtime is the one the caller fixes: the commit's time
  (``git log -1 --format=%ct``, the idea of ``SOURCE_DATE_EPOCH``,
  reproducible-builds.org) for the repo and model layers; 1 s after the epoch for
  the environment layer, which is cached across commits (``builder.ENV_MTIME``);
- owners: uid/gid 0, empty uname/gname;
- modes: files 0644 or 0755 (executable bit kept), directories 0755, links 0777;
- format: POSIX pax, which only adds an extended header for a value that does
  not fit (a long path), never atime/ctime; no xattrs are ever written;
- gzip: ``mtime=0``, no file name, a fixed level (6) — the header fields
  ``gzip -n`` writes, so ``gzip -dc`` / ``zcat`` read it and nothing varies;
  deflated in fixed 1 MiB blocks on all cores (``pgzip``), so the bytes do not
  depend on the number of cores or thread timing.

``diff_id`` (the sha256 of the uncompressed tar, config.md ``rootfs``) and the
blob digest (of the compressed bytes) are computed in the same pass.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from canon.digest import Digest, digest_of_hex
from canon.errors import ImageError
from canon.executors.image.pgzip import ParallelGzip
from canon.stores.oci.layout import ImageLayout
from canon.stores.oci.spec import LAYER_GZIP, Descriptor

NUL = b"\0"
SMALL_FILE = 1 << 16  # header, data and padding of a smaller file go out as one write
FILE_MODE = 0o644
EXEC_MODE = 0o755
DIR_MODE = 0o755


@dataclass(frozen=True)
class Entry:
    """One thing in a layer. ``read`` returns a file's bytes when it is written."""

    path: str  # relative POSIX path inside the image root, no leading "/"
    kind: str = "file"  # "file", "dir" or "symlink"
    executable: bool = False
    read: Callable[[], bytes] | None = field(default=None, compare=False)
    size: int = 0
    target: str = ""  # symlink target

    @staticmethod
    def data(path: str, content: bytes, executable: bool = False) -> Entry:
        return Entry(path, "file", executable, lambda: content, len(content))


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor  # of the compressed blob
    diff_id: Digest  # sha256 of the uncompressed tar
    entries: int
    content_size: int  # bytes of file content inside


class _Hashing:
    """The tar stream's sink: hashes it (the diff_id) and hands it to the gzip."""

    def __init__(self, gzip: ParallelGzip) -> None:
        self.hash = hashlib.sha256()
        self.gzip = gzip

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.gzip.write(data)
        return len(data)


def _parents(path: str) -> Iterable[str]:
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def normalised(entries: Iterable[Entry]) -> list[Entry]:
    """Entries sorted by path with every parent directory present, once each."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        path = entry.path
        if not path or path.startswith("/") or ".." in path.split("/") or "\x00" in path:
            raise ImageError(f"refusing layer entry {path!r}: not a relative path inside the root")
        if path in by_path and by_path[path].kind != "dir":
            raise ImageError(f"two layer entries for {path!r}")
        by_path[path] = entry
        for parent in _parents(path):
            existing = by_path.get(parent)
            if existing is None:
                by_path[parent] = Entry(parent, "dir")
            elif existing.kind != "dir":
                raise ImageError(f"layer entry {path!r} is under a non-directory {parent!r}")
    return [by_path[p] for p in sorted(by_path, key=lambda p: p.split("/"))]


def _info(entry: Entry, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, DIR_MODE
    elif entry.kind == "symlink":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
    elif entry.kind == "file":
        info.type = tarfile.REGTYPE
        info.mode = EXEC_MODE if entry.executable else FILE_MODE
    else:
        raise ImageError(f"unknown layer entry kind {entry.kind!r}")
    return info


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


def write_tar(entries: Iterable[Entry], mtime: int, out: Sink) -> tuple[int, int]:
    """Write the deterministic tar of ``entries`` to ``out``; (entries, content bytes).

    The bytes are those ``tarfile`` writes in ``w|`` mode with ``PAX_FORMAT``
    (``TarInfo.tobuf`` makes each header; data padded to 512-byte blocks; two
    zero blocks and padding to a 10240-byte record at the end), without its
    per-entry copying through 16 KiB buffers. Names are encoded as UTF-8
    whatever the locale.
    """
    count = content = offset = 0
    for entry in normalised(entries):
        info = _info(entry, mtime)
        if entry.kind == "file":
            data = entry.read() if entry.read is not None else b""
            info.size = len(data)
            content += len(data)
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            pad = NUL * (-len(data) % tarfile.BLOCKSIZE)
            if len(data) < SMALL_FILE:
                out.write(header + data + pad)
            else:
                out.write(header)
                out.write(data)
                out.write(pad)
            offset += len(header) + len(data) + len(pad)
        else:
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            out.write(header)
            offset += len(header)
        count += 1
    offset += 2 * tarfile.BLOCKSIZE
    out.write(NUL * (2 * tarfile.BLOCKSIZE + -offset % tarfile.RECORDSIZE))
    return count, content


def build_layer(layout: ImageLayout, entries: Iterable[Entry], mtime: int) -> Layer:
    """Write a gzip layer of ``entries`` into ``layout`` and describe it.

    The tar is written on this thread and hashed (the diff_id) as it goes;
    ``ParallelGzip`` deflates it on all cores (``pgzip``)."""
    with layout.writer() as blob:
        tar_sink = _Hashing(ParallelGzip(blob.write))
        try:
            count, content = write_tar(entries, mtime, tar_sink)
            tar_sink.gzip.close()
        finally:
            tar_sink.gzip.abort()
        digest = blob.commit()
        return Layer(
            Descriptor(LAYER_GZIP, digest, blob.size),
            digest_of_hex(tar_sink.hash.hexdigest()),
            count,
            content,
        )


def gunzip(data: bytes) -> bytes:
    """Decompress a gzip layer (for tests and small layers)."""
    return gzip.decompress(data)
