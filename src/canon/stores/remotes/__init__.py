"""Remotes: where objects live beyond this machine.

    protocol   the ``Remote`` protocol, key layout, ``KeyMissingError``
    retry      bounded jittered retries; secrets scrubbed from errors
    local      ``LocalRemote``: a directory (temp + rename)
    cloud      ``FsspecRemote``: S3 via s3fs (endpoint_url through client_kwargs), any fsspec URL
    fake       ``MemoryRemote``: the fake for unit tests (faults on demand)
    catalog    what a remote holds, from one listing + cached pack indexes

``open_remote(spec, root)`` picks the backend for a declared remote.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from canon.declare.project import RemoteSpec
from canon.stores.remotes.protocol import Remote, RemoteFile
from canon.urls import redact, scheme_of

if TYPE_CHECKING:
    from canon.stores.remotes.s3list import S3Lister, SignedLister

DEFAULT_JOBS = 8

__all__ = ["DEFAULT_JOBS", "LazyRemote", "Remote", "open_remote", "shareable"]


def shareable(remote: Remote) -> Remote | None:
    """``remote`` (or the backend behind it) if it can be handed to worker processes
    (picklable, no live connection: a directory); None otherwise (S3 clients are
    per-process, and threads already overlap their network waits)."""
    share = getattr(remote, "shareable", None)
    return share() if callable(share) else None


def open_remote(spec: RemoteSpec, root: Path, *, jobs: int | None = None) -> Remote:
    """The backend for ``spec``; a relative directory is relative to the project ``root``."""
    scheme = scheme_of(spec.url)
    if scheme is None or scheme == "file":
        from canon.stores.remotes.local import LocalRemote

        path = spec.url[len("file://") :] if scheme == "file" else spec.url
        return LocalRemote((root / Path(path).expanduser()).resolve())
    from canon.stores.remotes.cloud import FsspecRemote

    return FsspecRemote(
        spec.url,
        endpoint_url=spec.endpoint_url,
        region=spec.region,
        jobs=jobs or spec.jobs or DEFAULT_JOBS,
    )


class LazyRemote:
    """A remote opened on first use: a pull or fetch with nothing to download never
    imports s3fs/botocore (~0.5 s) nor contacts the remote. An S3 remote is listed
    with plain botocore (``s3list``) until something else is asked of it: a no-op
    push (one listing) never opens s3fs."""

    def __init__(self, spec: RemoteSpec, root: Path, *, jobs: int | None = None) -> None:
        self._open: Callable[[], Remote] = lambda: open_remote(spec, root, jobs=jobs)
        self._remote: Remote | None = None
        self._lister: S3Lister | SignedLister | None = None
        if scheme_of(spec.url) in ("s3", "s3a"):
            from canon.stores.remotes.s3list import light_lister

            self._lister = light_lister(spec.url, spec.endpoint_url, spec.region)
        local = self._local = scheme_of(spec.url) in (None, "file")
        shown = redact(spec.url)
        if local:
            path = spec.url[len("file://") :] if spec.url.startswith("file://") else spec.url
            shown = str((root / Path(path).expanduser()).resolve())
        elif spec.endpoint_url:
            shown = f"{shown.rstrip('/')} (endpoint {redact(spec.endpoint_url)})"
        self._display = shown

    @property
    def remote(self) -> Remote:
        if self._remote is None:
            self._remote = self._open()
        return self._remote

    @property
    def display(self) -> str:
        return self._display

    def shareable(self) -> Remote | None:
        """The opened remote if worker processes can use it (see ``shareable``); only
        a directory can be, so nothing else is opened to ask."""
        return shareable(self.remote) if self._local else None

    def list(self, prefix: str) -> Mapping[str, RemoteFile]:
        if self._lister is not None:
            return self._lister.list(prefix, where=self._display)
        return self.remote.list(prefix)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.remote.put_bytes(key, data)

    def put_file(self, key: str, path: Path) -> None:
        self.remote.put_file(key, path)

    def get_bytes(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return self.remote.get_bytes(key, start, end)

    def get_file(self, key: str, sink: Callable[[bytes], None]) -> None:
        self.remote.get_file(key, sink)

    def delete(self, keys: Sequence[str]) -> None:
        self.remote.delete(keys)
