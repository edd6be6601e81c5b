"""What ``apply`` is asked to do (options) and what it reports back (outcomes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ApplyOptions", "ApplyResult", "StageOutcome"]


@dataclass(frozen=True)
class ApplyOptions:
    jobs: int = 1
    keep_going: bool = False
    force: bool = False
    # `canon reproduce`: every stage the plan runs really runs (no lock or run-cache
    # restore, not even downstream of an identical output: early cut-off is off)
    rerun: bool = False
    # added to every stage's environment (`canon reproduce`: the rebuilt venv's PATH)
    stage_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StageOutcome:
    name: str
    status: str  # ran | restored | up-to-date | failed | skipped | not-run
    duration: float = 0.0
    exit_code: int | None = None
    message: str = ""
    key: str | None = None


@dataclass(frozen=True)
class ApplyResult:
    ok: bool
    outcomes: tuple[StageOutcome, ...]
    pinned: tuple[str, ...] = ()
    duration: float = 0.0
    failed: tuple[str, ...] = field(default_factory=tuple)
