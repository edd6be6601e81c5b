"""The ``Remote`` protocol: the one small interface every remote backend speaks.

A remote is a flat namespace of keys (``objects/ab/cd…``, ``packs/P.pack``)
holding immutable blobs. Backends: ``LocalRemote`` (a directory),
``FsspecRemote`` (S3 via s3fs, any fsspec URL), ``MemoryRemote`` (the fake for
unit tests). All pass one conformance suite (tests/stores/test_remote_conformance.py).

Contract every backend keeps:

- ``put_bytes`` / ``put_file`` are all-or-nothing: a reader never sees a key
  with partial content (S3: one PUT or a completed multipart upload; a
  directory: temp file + fsync + rename). Putting a key again with the same
  bytes is harmless (keys are content-addressed, so a put is idempotent).
- ``list(prefix)`` returns every key under ``prefix`` with its size and
  modification time, in one pass (paginated listing, no per-key requests).
- ``get_bytes(key, start, end)`` reads a byte range; ``get_file`` streams a
  whole key in bounded chunks. A missing key is ``KeyMissingError``.
- Every failure is a ``RemoteError``: transient ones (connection refused,
  timeouts, 5xx, 429) are retried a bounded number of times with jittered
  backoff (``canon.stores.remotes.retry``), then ``RemoteUnavailableError``.
  Messages never contain credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from canon.digest import Digest, hex_of
from canon.errors import RemoteError

OBJECTS = "objects/"
PACKS = "packs/"


class RemoteFile(NamedTuple):
    size: int
    mtime: float  # seconds since the epoch (0.0 when the backend does not say)


class KeyMissingError(RemoteError):
    code = "remote.key_missing"


class Remote(Protocol):
    """A place objects live beyond this machine. See the module docstring."""

    @property
    def display(self) -> str:
        """The remote's URL with any credentials redacted: safe for messages."""
        ...

    def list(self, prefix: str) -> Mapping[str, RemoteFile]: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def put_file(self, key: str, path: Path) -> None: ...

    def get_bytes(self, key: str, start: int = 0, end: int | None = None) -> bytes: ...

    def get_file(self, key: str, sink: Callable[[bytes], None]) -> None: ...

    def delete(self, keys: Sequence[str]) -> None: ...


def object_key(d: Digest) -> str:
    h = hex_of(d)
    return f"{OBJECTS}{h[:2]}/{h[2:]}"


def pack_key(pack: str) -> str:
    return f"{PACKS}{pack}.pack"


def index_key(pack: str) -> str:
    return f"{PACKS}{pack}.idx"


def check_key(key: str) -> str:
    """``key`` if it is a plain relative key canon writes; ``ValueError`` otherwise
    (keys are built by canon, but a listing from a remote is untrusted)."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"bad remote key {key[:80]!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"bad remote key {key[:80]!r}")
    return key
