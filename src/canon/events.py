"""Events: how the core tells its faces (CLI, JSON lines, UI) what happens.

The core never prints. It calls an ``Emit`` with these frozen values; the CLI
renders them as a live progress display, ``--json`` as JSON lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    def to_dict(self) -> dict[str, Any]:
        return {"event": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class ApplyStarted(Event):
    profile: str | None
    stages: tuple[str, ...]  # the stages that will be looked at, in order
    pending: int  # how many changes the plan holds


@dataclass(frozen=True)
class DatasetPinned(Event):
    name: str
    digest: str
    files: int
    size: int


@dataclass(frozen=True)
class DatasetFetching(Event):
    """Progress of a dataset being pinned (files and bytes stored so far)."""

    name: str
    files: int
    bytes: int


@dataclass(frozen=True)
class StageStarted(Event):
    name: str
    action: str  # "run" or "restore"
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageOutput(Event):
    name: str
    line: str


@dataclass(frozen=True)
class StageFinished(Event):
    name: str
    status: str  # "ran", "restored", "up-to-date", "failed", "skipped"
    duration: float = 0.0
    exit_code: int | None = None
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    log: str | None = None


@dataclass(frozen=True)
class ImageBuilt(Event):
    name: str
    digest: str
    status: str  # "built", "up-to-date", "checked", "differs"
    size: int = 0
    layers: int = 0
    reasons: tuple[str, ...] = ()
    duration: float = 0.0


@dataclass(frozen=True)
class ImagePushed(Event):
    name: str
    reference: str  # registry/repo@digest
    uploaded: int  # blobs uploaded
    skipped: int  # blobs the registry already had
    bytes_uploaded: int = 0


@dataclass(frozen=True)
class Notice(Event):
    message: str


@dataclass(frozen=True)
class ApplyFinished(Event):
    ok: bool
    duration: float
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TransferStarted(Event):
    """push / fetch / pull begins moving ``objects`` objects (``size`` bytes)."""

    direction: str  # "push" or "fetch"
    remote: str  # redacted
    objects: int
    size: int


@dataclass(frozen=True)
class TransferProgress(Event):
    """More objects moved (increments since the previous event)."""

    direction: str
    objects: int
    size: int


@dataclass(frozen=True)
class TransferFinished(Event):
    direction: str
    remote: str
    objects: int  # objects moved
    size: int
    requests: int  # remote objects written or read (packs, indexes, whole objects)
    present: int  # objects that were already there
    duration: float
    restored: tuple[str, ...] = ()  # pull: workspace paths restored


Emit = Callable[[Event], None]


def discard(_: Event) -> None:
    """An Emit that drops everything (for library use and tests)."""
