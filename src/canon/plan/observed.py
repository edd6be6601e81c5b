"""What ``canon.observe`` saw, handed to the pure planner.

Everything the planner needs is here as values, so planning does no I/O and
is tested from tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from canon.digest import Digest
from canon.stores.records import Content, Lock, RunRecord
from canon.stores.sourceindex import Drift


@dataclass(frozen=True)
class DataObservation:
    """What was seen of one dataset's source and pin (all optional: a value is
    only there when it was looked at)."""

    source: Content | None = None  # a workspace source's content now
    missing: bool = False  # the source is gone
    drift: Drift | None = None  # how the source differs from the pin (None: not compared)
    problem: str | None = None  # why the source could not be compared (unreachable…)
    cached: bool = False  # the pinned content is in the object store


@dataclass(frozen=True)
class ImageObservation:
    """One artifact's image: the key its inputs give now (None when it cannot be
    known before something else is built or run) and whether the recorded
    image is still stored."""

    key: Digest | None = None
    stored: bool = False
    problem: str | None = None  # why the key is unknown (not committed, file missing…)


@dataclass(frozen=True)
class DeploymentObservation:
    """A deployment as seen live: the image digest it runs or renders (None: nothing),
    whether every replica is ready, and every drift found, in words."""

    digest: str | None = None
    healthy: bool = False
    drift: tuple[str, ...] = ()


@dataclass(frozen=True)
class Observed:
    lock: Lock
    contents: Mapping[str, Content | None]  # workspace path -> content (None: missing)
    environment: Digest  # digest of the python version and requirements lock
    runs: Mapping[Digest, RunRecord] = field(default_factory=dict)  # run cache hits
    cached: frozenset[Digest] = frozenset()  # output digests present in the object store
    commit: str | None = None
    data: Mapping[str, DataObservation] = field(default_factory=dict)  # dataset name -> seen
    images: Mapping[str, ImageObservation] = field(default_factory=dict)  # artifact -> seen
    deployments: Mapping[str, DeploymentObservation] = field(default_factory=dict)  # env -> seen
