"""Fetch a URL source's files into the object store: parallel, streamed, verified.

Given the ``Listing`` of one listing pass (``canon.observe.sources``), every
file is downloaded straight into the object store (``ObjectStore.add_stream``:
written to a temp file and hashed as the bytes arrive, one chunk in memory per
transfer, so a 1 GiB file never sits in memory), in parallel. Each file's
size is checked against the listing: a file that changed between the listing
and its download fails the fetch (nothing is pinned; run again). The tree's
``Manifest`` is built from the digests and stored last, after every file it
names, so a manifest in the store always means a complete tree.

Small files are read with one GET each; files above ``STREAM_ABOVE`` are read
in ``CHUNK`` pieces through a buffered file object.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from canon.declare.project import DatasetSpec
from canon.digest import Digest
from canon.errors import SourceUnavailableError
from canon.observe.sources import Listing, retrying
from canon.stores.manifest import MODE_FILE, Manifest, ManifestEntry
from canon.stores.objects import ObjectStore
from canon.stores.records import Content
from canon.urls import redact

__all__ = ["CHUNK", "JOBS", "STREAM_ABOVE", "Fetched", "fetch"]

JOBS = 16  # transfers at once: object stores answer slowly per request, not per byte
CHUNK = 1 << 20
STREAM_ABOVE = 8 << 20

Progress = Callable[[int, int], None]  # (files done, bytes done)


@dataclass(frozen=True)
class Fetched:
    content: Content
    manifest: Manifest | None  # None for a single-file source


def fetch(
    spec: DatasetSpec,
    listing: Listing,
    store: ObjectStore,
    *,
    jobs: int = JOBS,
    progress: Progress | None = None,
) -> Fetched:
    """Download every file of ``listing`` into ``store``; the pinned content."""
    entries = list(listing.index)
    done = [0, 0]
    guard = threading.Lock()

    def one(rel: str, size: int) -> Digest:
        digest, got = retrying(spec, "read", lambda: _download(listing, rel, size, store))
        if got != size:
            raise SourceUnavailableError(
                f"data.{spec.name}: {rel} in {redact(spec.source)} changed while canon was "
                f"fetching it ({size} bytes listed, {got} read)",
                hint="run again once nothing is writing to the source",
            )
        if progress is not None:
            with guard:
                done[0] += 1
                done[1] += size
                progress(done[0], done[1])
        return digest

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(entries)))) as pool:
        digests = list(pool.map(lambda e: one(e.path, e.size), entries))
    if listing.single:
        return Fetched(Content(digests[0], entries[0].size, 1, False), None)
    manifest = Manifest.build(
        (
            ManifestEntry(e.path, e.size, MODE_FILE, d)
            for e, d in zip(entries, digests, strict=True)
        ),
        where=redact(spec.source),
    )
    store.add_bytes(manifest.to_bytes())  # last: after every file it names
    return Fetched(Content(manifest.digest, manifest.size, len(manifest), True), manifest)


def _download(listing: Listing, rel: str, size: int, store: ObjectStore) -> tuple[Digest, int]:
    path = listing.full(rel)
    fs = listing.fs
    if size <= STREAM_ABOVE:
        data: bytes = fs.cat_file(path)
        return store.add_stream([data])
    return store.add_stream(_chunks(fs, path))


def _chunks(fs: object, path: str) -> Iterator[bytes]:
    with fs.open(path, "rb", block_size=CHUNK) as f:  # type: ignore[attr-defined]
        while chunk := f.read(CHUNK):
            yield chunk
