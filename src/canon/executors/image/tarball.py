"""Deterministic layers: the same entries always give the same bytes.

A layer is a tar archive compressed with gzip (``tar+gzip``, image-spec
``layer.md``). What would make two builds of the same content differ, and how
each is fixed:

- entry order: entries are written sorted by path, parents before children
  (missing parent directories are added);
- timestamps: every entry's mtime is the commit's time (``git log -1 --format=%ct``),
  the same idea as ``SOURCE_DATE_EPOCH`` (reproducible-builds.org);
- owners: uid/gid 0, empty uname/gname;
- modes: files 0644 or 0755 (executable bit kept), directories 0755, links 0777;
- format: POSIX pax, which only adds an extended header for a value that does
  not fit (a long path), never atime/ctime; no xattrs are ever written;
- gzip: ``mtime=0``, no file name, a fixed level (6) — the header fields
  ``gzip -n`` writes, so ``gzip -dc`` / ``zcat`` read it and nothing varies.

``diff_id`` (the sha256 of the uncompressed tar, config.md ``rootfs``) and the
blob digest (of the compressed bytes) are computed in the same pass.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import queue
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO

from canon.digest import Digest, digest_of_hex
from canon.errors import ImageError
from canon.stores.oci.layout import BlobWriter, ImageLayout
from canon.stores.oci.spec import LAYER_GZIP, Descriptor

COMPRESSION_LEVEL = 6
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


class _Hashing(io.RawIOBase):
    """A sink for the tar stream: hashes it (the diff_id) and hands 1 MiB batches
    to ``sink``. hashlib and zlib release the GIL on large buffers, so with the
    compressor on another thread (``_Compressor``) building the tar, hashing it
    and deflating it run on two cores, like ``tar | gzip``."""

    BATCH = 1 << 20

    def __init__(self, sink: Callable[[bytes], object]) -> None:
        self.hash = hashlib.sha256()
        self.sink = sink
        self.pending = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.pending += data
        if len(self.pending) >= self.BATCH:
            self.flush_batch()
        return len(data)

    def flush_batch(self) -> None:
        if self.pending:
            batch = bytes(self.pending)
            self.pending.clear()
            self.hash.update(batch)
            self.sink(batch)


class _Compressor:
    """gzip on a worker thread: ``put`` batches, ``close`` waits and re-raises."""

    def __init__(self, write: Callable[[bytes], None], finish: Callable[[], None]) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.finish = finish
        self.thread = threading.Thread(target=self._run, args=(write,), daemon=True)
        self.thread.start()

    def _run(self, write: Callable[[bytes], None]) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    write(item)
                except BaseException as exc:  # re-raised by close()
                    self.error = exc

    def put(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(data)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        self.finish()


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


def write_tar(entries: Iterable[Entry], mtime: int, out: IO[bytes]) -> tuple[int, int]:
    """Write the deterministic tar of ``entries`` to ``out``; (entries, content bytes)."""
    count = content = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for entry in normalised(entries):
            info = _info(entry, mtime)
            if entry.kind == "file":
                data = entry.read() if entry.read is not None else b""
                info.size = len(data)
                content += len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
            count += 1
    return count, content


def build_layer(layout: ImageLayout, entries: Iterable[Entry], mtime: int) -> Layer:
    """Write a gzip layer of ``entries`` into ``layout`` and describe it."""
    with layout.writer() as blob:
        compressor = _Compressor(*_gzip_into(blob))
        tar_sink = _Hashing(compressor.put)
        try:
            count, content = write_tar(entries, mtime, tar_sink)  # type: ignore[arg-type]
            tar_sink.flush_batch()
        finally:
            compressor.close()
        digest = blob.commit()
        return Layer(
            Descriptor(LAYER_GZIP, digest, blob.size),
            digest_of_hex(tar_sink.hash.hexdigest()),
            count,
            content,
        )


def _gzip_into(blob: BlobWriter) -> tuple[Callable[[bytes], None], Callable[[], None]]:
    """``(write, finish)``: gzip into ``blob``.

    RFC 1952 header as ``gzip -n`` writes it: no FNAME, MTIME 0. We write the
    header and trailer ourselves around a raw deflate stream so that nothing
    from the environment (a file name, the clock) can reach the bytes.
    """
    blob.write(
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
    )  # magic, deflate, no flags, mtime 0, OS unix
    deflate = zlib.compressobj(COMPRESSION_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, 9)
    crc = size = 0

    def write(data: bytes) -> None:
        nonlocal crc, size
        crc = zlib.crc32(data, crc)
        size += len(data)
        out = deflate.compress(data)
        if out:
            blob.write(out)

    def finish() -> None:
        blob.write(deflate.flush())
        blob.write(
            (crc & 0xFFFFFFFF).to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")
        )

    return write, finish


def gunzip(data: bytes) -> bytes:
    """Decompress a gzip layer (for tests and small layers)."""
    return gzip.decompress(data)
