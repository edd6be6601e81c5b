"""A remote that is a directory: another disk, an NFS mount, a test's tmp dir.

Keys are files under the root. A put writes a temp file in ``<root>/tmp/``
(never under a key's name), fsyncs it and renames it into place, then fsyncs
the directory: readers see nothing or everything. Temp files of a killed
writer stay in ``tmp/`` (ignored by listings, removed by ``canon gc``).
Symlinks under the root are never followed out of it (``O_NOFOLLOW`` on the
file; keys are checked to be plain relative paths).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from canon.errors import RemoteError
from canon.stores.atomic import fsync_dir
from canon.stores.remotes.protocol import KeyMissingError, RemoteFile, check_key
from canon.stores.remotes.retry import Transient, call

CHUNK = 1 << 20
_TMP = "tmp"


class LocalRemote:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def display(self) -> str:
        return str(self.root)

    def shareable(self) -> LocalRemote:
        """This remote, for worker processes: it holds nothing but its root (picklable,
        no connection), so a push can write packs from several processes at once."""
        return self

    def _path(self, key: str) -> str:
        return os.path.join(self.root, check_key(key))

    def _call(self, what: str, fn: Callable[[], object]) -> object:
        return call(what, fn, _classify, where=self.display)

    def list(self, prefix: str) -> Mapping[str, RemoteFile]:
        out: dict[str, RemoteFile] = {}
        top = os.path.join(self.root, prefix.rstrip("/"))
        # A directory that does not exist yet is an empty remote: the first push makes it.
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not (dirpath == str(self.root) and d == _TMP)]
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            base = "" if rel == "." else rel + "/"
            for name in filenames:
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(os.path.join(dirpath, name), follow_symlinks=False)
                    out[base + name] = RemoteFile(st.st_size, st.st_mtime)
        return out

    def put_bytes(self, key: str, data: bytes) -> None:
        def write(fd: int) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

        self._put(key, write)

    def put_file(self, key: str, path: Path) -> None:
        def copy(fd: int) -> None:
            with open(path, "rb") as src, os.fdopen(os.dup(fd), "wb", closefd=True) as dst:
                shutil.copyfileobj(src, dst, CHUNK)

        self._put(key, copy)

    def _put(self, key: str, fill: Callable[[int], None]) -> None:
        final = self._path(key)
        tmpdir = os.path.join(self.root, _TMP)

        def attempt() -> None:
            os.makedirs(tmpdir, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix="put-", suffix=".tmp", dir=tmpdir)
            try:
                fill(fd)
                os.fsync(fd)
                os.close(fd)
                fd = -1
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(tmp, final)
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            fsync_dir(Path(os.path.dirname(final)))

        self._call(f"PUT {key}", attempt)

    def get_bytes(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        path = self._path(key)

        def read() -> bytes:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                size = os.fstat(fd).st_size if end is None else end
                parts: list[bytes] = []
                pos = start
                while pos < size:
                    chunk = os.pread(fd, min(CHUNK * 8, size - pos), pos)
                    if not chunk:
                        break
                    parts.append(chunk)
                    pos += len(chunk)
                return b"".join(parts)
            finally:
                os.close(fd)

        data = self._call(f"GET {key}", read)
        assert isinstance(data, bytes)
        return data

    def get_file(self, key: str, sink: Callable[[bytes], None]) -> None:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            verdict = _classify(exc)
            raise (verdict if isinstance(verdict, RemoteError) else exc) from exc
        try:
            while chunk := os.read(fd, CHUNK):
                sink(chunk)
        finally:
            os.close(fd)

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(key))


def _classify(exc: BaseException) -> RemoteError | Transient | None:
    if isinstance(exc, FileNotFoundError):
        return KeyMissingError(f"{exc.filename} is not on the remote")
    if isinstance(exc, OSError):
        if exc.errno in (errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE, errno.EINTR):
            return Transient(str(exc))
        return RemoteError(f"remote directory: {exc.strerror} ({exc.filename})")
    return None
