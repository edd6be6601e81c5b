"""The OCI image layout directory (image-layout.md): canon's embedded image store.

    .canon/images/
      oci-layout               {"imageLayoutVersion": "1.0.0"}
      index.json               tagged manifests (annotation org.opencontainers.image.ref.name)
      blobs/sha256/<hex>       content-addressed blobs

Invariants (RELIABILITY.md 1 and 2):

- a blob is visible under ``blobs/sha256/<hex>`` only once its bytes hash to
  ``<hex>``: writes go to a temp file in the same directory, are hashed while
  written, fsynced, checked and renamed;
- every read verifies the digest (and the size, when the caller knows it);
- ``index.json`` is rewritten atomically under a file lock, so two builds never
  lose each other's tags and a reader sees the old or the new index.

Any tool that reads OCI layouts reads this one: ``skopeo copy oci:.canon/images:model ...``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from canon import failpoints
from canon.digest import BUFFER_SIZE, Digest, digest_of_hex, hex_of, is_digest
from canon.errors import CanonError, ImageError, IntegrityError
from canon.stores.atomic import atomic_write, fsync_dir
from canon.stores.oci.spec import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_DOCUMENT,
    REF_NAME,
    Descriptor,
    canonical_json,
    index_bytes,
    media_type_of,
    parse_index,
    parse_manifest,
)

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


class BlobWriter:
    """A blob being written: bytes go to a temp file and into a sha256 as they come."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        self.path = Path(name)
        self.file: IO[bytes] = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.file.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def commit(self, expected: Digest | None = None, expected_size: int | None = None) -> Digest:
        """Move the blob to its address; refuse it if it is not what was expected."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        digest = digest_of_hex(self.hash.hexdigest())
        if (expected is not None and digest != expected) or (
            expected_size is not None and self.size != expected_size
        ):
            self.discard()
            raise IntegrityError(
                f"blob {expected} has the wrong content: got {digest}, {self.size} bytes"
                + (f" (expected {expected_size})" if expected_size is not None else ""),
                hint="the source is corrupt or was changed in transit; try again",
            )
        failpoints.hit("oci.blob.before_rename")
        final = self.directory / hex_of(digest)
        os.replace(self.path, final)
        fsync_dir(self.directory)
        return digest

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass(frozen=True)
class StoredBlob:
    """A file under ``blobs/sha256``: a blob (``digest``) or a write's temp file (None)."""

    digest: Digest | None
    path: Path
    size: int
    mtime: float


class ImageLayout:
    """An OCI image layout at ``root`` (created on first write)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"

    # -- blobs -----------------------------------------------------------

    def _ensure(self) -> None:
        if not (self.root / "oci-layout").exists():
            self.blobs.mkdir(parents=True, exist_ok=True)
            atomic_write(self.root / "oci-layout", canonical_json(LAYOUT_VERSION))
        if not (self.root / "index.json").exists():
            atomic_write(self.root / "index.json", index_bytes([]))
        self.blobs.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: Digest) -> Path:
        if not is_digest(digest):
            raise ImageError(f"not a sha256 digest: {digest!r}")
        return self.blobs / hex_of(digest)

    def has_blob(self, digest: Digest, size: int | None = None) -> bool:
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    @contextlib.contextmanager
    def writer(self) -> Iterator[BlobWriter]:
        """A ``BlobWriter``; the caller commits it, or it is discarded."""
        self._ensure()
        w = BlobWriter(self.blobs)
        try:
            yield w
        finally:
            w.discard()  # a no-op after commit (the temp file was renamed)

    def put_bytes(self, data: bytes, expected: Digest | None = None) -> Digest:
        with self.writer() as w:
            w.write(data)
            return w.commit(expected, None if expected is None else len(data))

    def read_bytes(self, digest: Digest, size: int | None = None) -> bytes:
        """The blob's bytes, verified against ``digest`` (and ``size``)."""
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageError(
                f"blob {digest} is not in {self.root}",
                hint="build the image again (`canon build`) or pull it (`canon pull-image`)",
            ) from None
        self._check(digest, size, hashlib.sha256(data).hexdigest(), len(data))
        return data

    def verify(self, digest: Digest, size: int | None = None) -> None:
        """Re-hash a blob on disk (large layers are verified this way before use)."""
        h = hashlib.sha256()
        total = 0
        try:
            with open(self.blob_path(digest), "rb") as f:
                while chunk := f.read(BUFFER_SIZE):
                    h.update(chunk)
                    total += len(chunk)
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is not in {self.root}") from None
        self._check(digest, size, h.hexdigest(), total)

    def _check(self, digest: Digest, size: int | None, hexdigest: str, length: int) -> None:
        if hexdigest != hex_of(digest) or (size is not None and size != length):
            raise IntegrityError(
                f"blob {digest} in {self.root} is corrupt ({length} bytes, sha256:{hexdigest})",
                hint="delete it and build or pull the image again",
            )

    def stored(self) -> Iterator[StoredBlob]:
        """Every file in ``blobs/sha256``, without reading it (for garbage collection)."""
        try:
            it = os.scandir(self.blobs)
        except FileNotFoundError:
            return
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                digest = "sha256:" + e.name
                yield StoredBlob(
                    Digest(digest) if is_digest(digest) else None,
                    Path(e.path),
                    st.st_size,
                    st.st_mtime,
                )

    def reachable(self, roots: Iterable[Digest]) -> set[Digest]:
        """The stored blobs ``roots`` name: each stored root, and through every manifest
        among them its config and layers, through every index its manifests.

        Verified reads: a corrupt manifest or index raises (``IntegrityError``)
        rather than hide what it references."""
        seen: set[Digest] = set()
        todo = [d for d in roots if is_digest(d)]
        while todo:
            digest = todo.pop()
            if digest in seen or not self.has_blob(digest):
                continue
            seen.add(digest)
            if self.blob_path(digest).stat().st_size > MAX_DOCUMENT:
                continue  # a layer named as a root: nothing inside to follow
            data = self.read_bytes(digest)
            try:
                media_type = media_type_of(data)
                if media_type in INDEX_TYPES:
                    todo += [d.digest for d in parse_index(data, f"index {digest}")]
                elif media_type in MANIFEST_TYPES:
                    manifest = parse_manifest(data, f"manifest {digest}")
                    seen.update(
                        d.digest
                        for d in (manifest.config, *manifest.layers)
                        if self.has_blob(d.digest)
                    )
            except ImageError:
                continue  # not a manifest or index (a config or a small layer): a leaf
        return seen

    def indexes_listing(self, manifests: set[Digest]) -> set[Digest]:
        """The stored image indexes that list one of ``manifests``: what a base pinned
        by a multi-platform index (``from: …@sha256:<index>``) was resolved through."""
        found: set[Digest] = set()
        for blob in self.stored():
            if blob.digest is None or blob.digest in manifests or blob.size > MAX_DOCUMENT:
                continue
            try:
                data = self.read_bytes(blob.digest, blob.size)
                if media_type_of(data) in INDEX_TYPES and any(
                    d.digest in manifests for d in parse_index(data)
                ):
                    found.add(blob.digest)
            except CanonError:
                continue  # not an index, or unreadable: not something to keep for this
        return found

    def remove_blob(self, digest: Digest) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.blob_path(digest).unlink()

    def put_descriptor_bytes(self, descriptor: Descriptor, data: bytes) -> None:
        if not self.has_blob(descriptor.digest, descriptor.size):
            self.put_bytes(data, descriptor.digest)

    # -- tags ------------------------------------------------------------

    @contextlib.contextmanager
    def _index_lock(self) -> Iterator[None]:
        self._ensure()
        with open(self.root / ".index.lock", "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def manifests(self) -> tuple[Descriptor, ...]:
        try:
            data = (self.root / "index.json").read_bytes()
        except FileNotFoundError:
            return ()
        return parse_index(data, f"{self.root}/index.json")

    def tags(self) -> dict[str, Descriptor]:
        return {d.annotations[REF_NAME]: d for d in self.manifests() if REF_NAME in d.annotations}

    def resolve(self, tag: str) -> Descriptor | None:
        return self.tags().get(tag)

    def tag(self, tag: str, manifest: Descriptor) -> None:
        """Point ``tag`` at ``manifest`` (whose blob must already be stored)."""
        if not self.has_blob(manifest.digest, manifest.size):
            raise ImageError(f"cannot tag {tag}: manifest {manifest.digest} is not stored")
        entry = Descriptor(
            manifest.media_type,
            manifest.digest,
            manifest.size,
            {**manifest.annotations, REF_NAME: tag},
            manifest.platform,
        )
        with self._index_lock():
            kept = [d for d in self.manifests() if d.annotations.get(REF_NAME) != tag]
            kept.append(entry)
            kept.sort(key=lambda d: d.annotations.get(REF_NAME, ""))
            atomic_write(self.root / "index.json", index_bytes(kept))
