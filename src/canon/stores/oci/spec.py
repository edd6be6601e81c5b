"""The OCI image format, as much of it as canon writes and reads.

References: opencontainers/image-spec ``descriptor.md``, ``manifest.md``,
``image-index.md``, ``config.md``, ``image-layout.md`` and
``annotations.md`` (v1.1). JSON documents canon writes are *canonical*: keys
sorted, no insignificant whitespace, UTF-8 — so the same content always has the
same digest, which is what makes an image reproducible.

Everything parsed here comes from disk or a registry and is untrusted: parse
functions check types and digest forms and raise ``ImageError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from canon.digest import Digest, hash_bytes, is_digest
from canon.errors import ImageError

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_TYPES = (MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (INDEX, DOCKER_LIST)
LAYER_TYPES = (LAYER_GZIP, LAYER_TAR, DOCKER_LAYER)

# annotations.md
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"
REVISION = "org.opencontainers.image.revision"
SOURCE = "org.opencontainers.image.source"
TITLE = "org.opencontainers.image.title"
BASE_DIGEST = "org.opencontainers.image.base.digest"
BASE_NAME = "org.opencontainers.image.base.name"

MAX_DOCUMENT = 4 << 20  # manifests, indexes and configs are small; refuse huge ones


def canonical_json(value: Any) -> bytes:
    """The one byte form canon writes JSON documents in."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Descriptor:
    """descriptor.md: what a blob is, its digest and its size."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = dict(self.platform)
        return out

    @classmethod
    def of(cls, media_type: str, data: bytes, **kw: Any) -> Descriptor:
        return cls(media_type, hash_bytes(data), len(data), **kw)


def parse_descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise ImageError(f"{where}: a descriptor must be an object")
    media_type, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    if not isinstance(media_type, str) or not isinstance(digest, str) or not is_digest(digest):
        raise ImageError(f"{where}: descriptor needs mediaType and a sha256 digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImageError(f"{where}: descriptor size must be a non-negative integer")
    annotations = raw.get("annotations") or {}
    platform = raw.get("platform")
    if not isinstance(annotations, dict) or (
        platform is not None and not isinstance(platform, dict)
    ):
        raise ImageError(f"{where}: malformed annotations or platform")
    return Descriptor(
        media_type,
        Digest(digest),
        size,
        {str(k): str(v) for k, v in annotations.items()},
        None if platform is None else {str(k): str(v) for k, v in platform.items()},
    )


def load_document(data: bytes, where: str) -> dict[str, Any]:
    if len(data) > MAX_DOCUMENT:
        raise ImageError(f"{where} is larger than {MAX_DOCUMENT} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{where} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ImageError(f"{where} is not a JSON object")
    return doc


@dataclass(frozen=True)
class Manifest:
    """manifest.md: a config and ordered layers."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    media_type: str = MANIFEST

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())


def parse_manifest(data: bytes, where: str = "manifest") -> Manifest:
    doc = load_document(data, where)
    media_type = doc.get("mediaType", MANIFEST)
    if doc.get("schemaVersion") != 2 or media_type not in MANIFEST_TYPES:
        raise ImageError(f"{where}: not an image manifest (mediaType {media_type!r})")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ImageError(f"{where}: layers must be a list")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ImageError(f"{where}: annotations must be an object")
    return Manifest(
        parse_descriptor(doc.get("config"), f"{where}.config"),
        tuple(parse_descriptor(d, f"{where}.layers[{i}]") for i, d in enumerate(layers)),
        {str(k): str(v) for k, v in annotations.items()},
        str(media_type),
    )


def parse_index(data: bytes, where: str = "index") -> tuple[Descriptor, ...]:
    """image-index.md: the manifests an index lists."""
    doc = load_document(data, where)
    manifests = doc.get("manifests")
    if doc.get("schemaVersion") != 2 or not isinstance(manifests, list):
        raise ImageError(f"{where}: not an image index")
    return tuple(parse_descriptor(d, f"{where}.manifests[{i}]") for i, d in enumerate(manifests))


def index_bytes(manifests: list[Descriptor]) -> bytes:
    return canonical_json(
        {"schemaVersion": 2, "mediaType": INDEX, "manifests": [m.to_json() for m in manifests]}
    )


def media_type_of(data: bytes) -> str:
    """The mediaType a manifest or index document declares (OCI manifest if unsaid)."""
    doc = load_document(data, "document")
    value = doc.get("mediaType")
    if isinstance(value, str):
        return value
    return INDEX if "manifests" in doc else MANIFEST


def diff_ids(config: Mapping[str, Any]) -> list[str]:
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(d, str) and is_digest(d) for d in ids):
        raise ImageError("image config: rootfs.diff_ids must be a list of sha256 digests")
    return list(ids)
