"""``MemoryRemote``: the in-package fake remote for unit tests.

Keeps keys in a dict, passes the same conformance suite as the real
backends, and lets a test break it on purpose: ``fail_next(n, op)`` makes the
next ``n`` calls of an operation fail transiently (like a 503), ``down`` makes
every call fail, ``corrupt(key)`` flips a byte of a stored value, and
``calls`` counts requests per operation (to assert "nothing re-uploaded").
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from canon.errors import RemoteError
from canon.stores.remotes.protocol import KeyMissingError, RemoteFile, check_key
from canon.stores.remotes.retry import Transient, call


class _Injected(OSError):
    pass


class MemoryRemote:
    def __init__(self, name: str = "memory://fake") -> None:
        self.name = name
        self.blobs: dict[str, tuple[bytes, float]] = {}
        self.calls: Counter[str] = Counter()
        self.down = False
        self._fail: Counter[str] = Counter()
        self._guard = threading.Lock()
        self.sleep: Callable[[float], None] = lambda _s: None  # retries without waiting

    @property
    def display(self) -> str:
        return self.name

    def fail_next(self, n: int, op: str) -> None:
        self._fail[op] += n

    def corrupt(self, key: str) -> None:
        data, mtime = self.blobs[key]
        self.blobs[key] = (bytes([data[0] ^ 0xFF]) + data[1:], mtime)

    def _op(self, op: str, fn: Callable[[], object]) -> object:
        def attempt() -> object:
            with self._guard:
                self.calls[op] += 1
                if self.down or self._fail[op] > 0:
                    self._fail[op] = max(0, self._fail[op] - 1)
                    raise _Injected("injected failure")
            return fn()

        return call(op, attempt, _classify, where=self.name, sleep=self.sleep)

    def list(self, prefix: str) -> Mapping[str, RemoteFile]:
        def run() -> dict[str, RemoteFile]:
            with self._guard:
                return {
                    k: RemoteFile(len(v), t)
                    for k, (v, t) in self.blobs.items()
                    if k.startswith(prefix)
                }

        out = self._op("list", run)
        assert isinstance(out, dict)
        return out

    def put_bytes(self, key: str, data: bytes) -> None:
        check_key(key)

        def run() -> None:
            with self._guard:
                self.blobs[key] = (bytes(data), time.time())

        self._op("put", run)

    def put_file(self, key: str, path: Path) -> None:
        self.put_bytes(key, path.read_bytes())

    def get_bytes(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        def run() -> bytes:
            with self._guard:
                if key not in self.blobs:
                    raise KeyMissingError(f"{key} is not on the remote")
                return self.blobs[key][0][start:end]

        out = self._op("get", run)
        assert isinstance(out, bytes)
        return out

    def get_file(self, key: str, sink: Callable[[bytes], None]) -> None:
        data = self.get_bytes(key)
        for i in range(0, len(data), 1 << 20):
            sink(data[i : i + (1 << 20)])

    def delete(self, keys: Sequence[str]) -> None:
        def run() -> None:
            with self._guard:
                for k in keys:
                    self.blobs.pop(k, None)

        self._op("delete", run)


def _classify(exc: BaseException) -> RemoteError | Transient | None:
    if isinstance(exc, RemoteError):
        return exc
    if isinstance(exc, _Injected):
        return Transient(str(exc))
    return None
