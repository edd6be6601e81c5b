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

from pathlib import Path

from canon.declare.project import RemoteSpec
from canon.stores.remotes.protocol import Remote
from canon.urls import scheme_of

DEFAULT_JOBS = 8

__all__ = ["DEFAULT_JOBS", "Remote", "open_remote"]


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
