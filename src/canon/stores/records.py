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
class DatasetRecord:
    path: str
    content: Content


@dataclass(frozen=True)
class ProfileState:
    environment: Digest | None = None
    data: Mapping[str, DatasetRecord] = field(default_factory=dict)
    stages: Mapping[str, StageRecord] = field(default_factory=dict)

    def with_stage(self, name: str, record: StageRecord) -> ProfileState:
        return replace(self, stages={**self.stages, name: record})

    def with_dataset(self, name: str, record: DatasetRecord) -> ProfileState:
        return replace(self, data={**self.data, name: record})


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
