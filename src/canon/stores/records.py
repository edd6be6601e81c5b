"""What canon records: the lock's data, as frozen values with no I/O.

``canon.lock`` holds one ``ProfileState`` per profile (the same stage can have
different inputs under ``local`` and ``cloud``). ``canon.stores.lockfile``
reads and writes it; ``canon.plan`` compares it with what is observed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from canon.digest import Digest

LOCK_VERSION = 1
DEFAULT_PROFILE = "default"  # the lock's key when a project declares no profiles


@dataclass(frozen=True)
class Content:
    """What a workspace path or an object holds: a file or a directory manifest."""

    digest: Digest
    size: int
    nfiles: int
    is_dir: bool


@dataclass(frozen=True)
class StageRecord:
    """The last successful run of a stage under one profile."""

    key: Digest
    cmd: tuple[str, ...]
    environment: Digest
    deps: Mapping[str, Digest]  # dep address -> digest
    params: Mapping[str, Any]  # declared entry -> value
    outs: Mapping[str, Content]  # out path -> content
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SubsetOf:
    """A subset's parent, as pinned when the subset was made."""

    name: str
    digest: Digest


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset's pin under one profile: the pin wins over whatever the source
    holds today. ``content`` is the pinned content (a file's sha256 or a
    directory manifest's digest); ``index`` is the object listing the source's
    files with their version tokens (ETag, mtime) when pinned, which lets
    drift be reported from one listing without downloading anything; ``spec``
    is what was pinned (subset: sample/filter/seed; query: query digest,
    redacted database URL, as_of, format)."""

    path: str
    content: Content
    source: str | None = None  # redacted path or URL
    index: Digest | None = None
    subset_of: SubsetOf | None = None
    spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageRecord:
    """The last image built for an artifact under one profile (the pin).

    ``digest`` is the manifest's digest: a registry tag that points elsewhere
    is reported and the pin wins. ``key`` covers every input of the image, so
    staleness is known without building; ``commit`` is the commit it was built
    from (``canon build --check`` rebuilds that commit)."""

    digest: Digest
    key: Digest
    commit: str
    size: int = 0  # bytes of its layers (compressed)
    base: Digest | None = None  # the image it was built on
    pushed: Mapping[str, str] = field(default_factory=dict)  # registry repo -> tag pushed


@dataclass(frozen=True)
class ProfileState:
    environment: Digest | None = None
    data: Mapping[str, DatasetRecord] = field(default_factory=dict)
    stages: Mapping[str, StageRecord] = field(default_factory=dict)
    images: Mapping[str, ImageRecord] = field(default_factory=dict)

    def with_stage(self, name: str, record: StageRecord) -> ProfileState:
        return replace(self, stages={**self.stages, name: record})

    def with_dataset(self, name: str, record: DatasetRecord) -> ProfileState:
        return replace(self, data={**self.data, name: record})

    def with_image(self, name: str, record: ImageRecord) -> ProfileState:
        return replace(self, images={**self.images, name: record})


@dataclass(frozen=True)
class Lock:
    profiles: Mapping[str, ProfileState] = field(default_factory=dict)

    def state(self, profile: str | None) -> ProfileState:
        return self.profiles.get(profile or DEFAULT_PROFILE, ProfileState())

    def with_state(self, profile: str | None, state: ProfileState) -> Lock:
        return Lock({**self.profiles, profile or DEFAULT_PROFILE: state})


@dataclass(frozen=True)
class RunRecord:
    """A run seen before: these inputs (the key) produced these outputs."""

    key: Digest
    outs: Mapping[str, Content]
