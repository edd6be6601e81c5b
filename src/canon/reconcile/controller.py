"""The reconcile loop: the live state follows a Git branch.

Each reconcile: ``git fetch`` the remote branch -> check the fetched commit out (the
controller owns its clone: tracked files follow Git, ignored outputs and ``.canon/``
stay) -> ``canon apply`` (load, observe, plan, apply — under the same repo lock as the CLI,
so the two never apply at once) -> health of the deployments -> record. The result says
what happens next (fluxcd kustomize-controller's model):

- ``Ready``   — applied and healthy; come back after the interval (with jitter);
- ``Retry``   — transient (Git unreachable, the repo lock busy, a remote down, a rollout
                that did not get ready): back off exponentially, capped;
- ``Stalled`` — needs a Git change (the declaration is invalid, a stage fails): wait for
                a new commit; the same commit is tried again only after
                ``stalled_retry`` (an hour by default, as Flux's retryInterval: a stage
                may have failed on something outside Git, a data source or a full disk),
                never sooner, and never if it is 0.

A failed or empty read of Git never prunes or undeploys anything: on a fetch failure
nothing is applied, and apply itself never removes deployments.

The status (condition, reason, when the condition last changed, last attempted and
last applied commit, counts, the commit that stalled and when) is written atomically to
``.canon/controller/status.json`` after every reconcile and read back at start: a
restarted controller reports what it last did, and does not run a commit that
stalled again. A damaged file is set aside and the controller starts afresh.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from canon.errors import (
    CanonError,
    DeclarationError,
    GraphError,
    LockedError,
    ProfileError,
    StageFailedError,
)
from canon.events import Emit, Event, Notice
from canon.stores.atomic import atomic_write

STATUS_FILE = Path(".canon") / "controller" / "status.json"
_FORMAT = 1


class Condition(StrEnum):
    READY = "Ready"
    RETRY = "Retry"
    STALLED = "Stalled"


@dataclass(frozen=True)
class Result:
    condition: Condition
    reason: str  # a stable code: ReconciliationSucceeded, GitFetchFailed, ...
    message: str
    attempted: str | None  # the commit this reconcile looked at
    at: float = 0.0


@dataclass(frozen=True)
class Options:
    remote: str = "origin"
    branch: str = "main"
    interval: float = 60.0
    jitter: float = 0.1  # +-10 % of the interval, so many controllers do not poll in step
    backoff_start: float = 2.0
    backoff_max: float = 300.0
    profile: str | None = None
    stalled_retry: float = 3600.0  # seconds before a stalled commit is tried again; 0: never


@dataclass
class Status:
    """What the controller's /readyz, /status and /metrics show."""

    last: Result | None = None
    last_applied: str | None = None
    last_attempted: str | None = None
    reconciles: dict[str, int] = field(default_factory=dict)  # condition -> count
    failures_in_a_row: int = 0
    since: float = 0.0  # when the condition last changed (a Kubernetes lastTransitionTime)
    stalled_on: str | None = None  # this commit stalled: only a new commit is tried
    stalled_at: float = 0.0  # when it stalled (its retry is due stalled_retry later)

    def to_dict(self) -> dict[str, Any]:
        last = self.last
        return {
            "condition": last.condition.value if last else None,
            "reason": last.reason if last else "NotReconciledYet",
            "message": last.message if last else "",
            "at": last.at if last else None,
            "since": self.since or None,
            "last_attempted": self.last_attempted,
            "last_applied": self.last_applied,
            "stalled_on": self.stalled_on,
            "stalled_at": self.stalled_at or None,
            "reconciles": dict(self.reconciles),
            "failures_in_a_row": self.failures_in_a_row,
        }

    @staticmethod
    def from_dict(doc: dict[str, Any]) -> Status:
        """The inverse of ``to_dict``; ``ValueError``/``KeyError``/``TypeError`` if damaged."""
        last = None
        if doc["condition"] is not None:
            last = Result(
                Condition(doc["condition"]),
                str(doc["reason"]),
                str(doc["message"]),
                _commit(doc["last_attempted"]),
                float(doc["at"]),
            )
        counts = doc["reconciles"]
        if not isinstance(counts, dict):
            raise TypeError("reconciles")
        return Status(
            last,
            _commit(doc["last_applied"]),
            _commit(doc["last_attempted"]),
            {str(k): int(v) for k, v in counts.items()},
            int(doc["failures_in_a_row"]),
            float(doc["since"] or 0.0),
            _commit(doc["stalled_on"]),
            float(doc.get("stalled_at") or doc["at"] or 0.0),  # older files: the last reconcile
        )


def _commit(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value):
        return value
    raise ValueError(f"not a commit: {value!r}")


def load_status(root: Path) -> Status:
    """The status a previous controller left in ``root`` (a fresh one if none or damaged;
    a damaged file is kept beside as ``status.json.damaged`` for a human to look at)."""
    path = root / STATUS_FILE
    try:
        doc = json.loads(path.read_bytes())
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise ValueError("unknown format")
        return Status.from_dict(doc)
    except FileNotFoundError:
        return Status()
    except (OSError, ValueError, KeyError, TypeError):
        with contextlib.suppress(OSError):
            path.replace(path.with_name(path.name + ".damaged"))
        return Status()


def save_status(root: Path, status: Status) -> None:
    doc = {"format": _FORMAT, **status.to_dict()}
    atomic_write(root / STATUS_FILE, (json.dumps(doc, sort_keys=True) + "\n").encode())


ApplyFn = Callable[[Path, str | None, Emit], None]


def _apply(root: Path, profile: str | None, emit: Emit) -> None:
    from canon.apply.session import run_apply

    result = run_apply(root, profile=profile, emit=emit, argv=("canon", "controller"), wait=30)
    if not result.ok:
        raise StageFailedError(f"apply failed: {', '.join(result.failed) or 'see the ledger'}")


def _git(root: Path, *args: str, timeout: float = 120) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise OSError(done.stderr.strip()[:300] or f"git {args[0]} failed")
    return done.stdout.strip()


class Controller:
    def __init__(
        self,
        root: Path,
        options: Options,
        emit: Emit,
        apply: ApplyFn = _apply,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.options = options
        self.emit = emit
        self.apply = apply
        self.clock = clock
        self.status = load_status(root)
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def reconcile(self) -> Result:
        o = self.options
        try:
            _git(self.root, "fetch", "--quiet", o.remote, o.branch)
            commit = _git(self.root, "rev-parse", "--verify", "FETCH_HEAD^{commit}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return self._record(Condition.RETRY, "GitFetchFailed", str(exc), None)
        if not commit:
            return self._record(Condition.RETRY, "GitEmpty", "the branch resolved to nothing", None)
        due = self._retry_due()
        if commit == self.status.stalled_on and (due is None or self.clock() < due):
            when = (
                ""
                if due is None
                else f" (or until {time.strftime('%H:%M:%S', time.localtime(due))}, "
                "when it is tried again)"
            )
            return self._record(
                Condition.STALLED,
                "WaitingForGitChange",
                f"{commit[:12]} stalled before; waiting for a new commit{when}",
                commit,
            )
        try:
            _git(self.root, "checkout", "--quiet", "--force", "--detach", commit)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return self._record(Condition.RETRY, "CheckoutFailed", str(exc), commit)
        try:
            self.apply(self.root, o.profile, self.emit)
        except (DeclarationError, GraphError, ProfileError, StageFailedError) as exc:
            self.status.stalled_on = commit
            return self._record(
                Condition.STALLED, type(exc).__name__, exc.message, commit, stalled=True
            )
        except LockedError as exc:
            return self._record(Condition.RETRY, "RepoLocked", exc.message, commit)
        except CanonError as exc:
            return self._record(Condition.RETRY, exc.code, exc.message, commit)
        self.status.stalled_on = None
        self.status.last_applied = commit
        return self._record(
            Condition.READY, "ReconciliationSucceeded", f"applied {commit[:12]}", commit
        )

    def _retry_due(self) -> float | None:
        """When the stalled commit is tried again (None: only a new commit is)."""
        if self.options.stalled_retry <= 0 or self.status.stalled_on is None:
            return None
        return self.status.stalled_at + self.options.stalled_retry

    def _record(
        self,
        condition: Condition,
        reason: str,
        message: str,
        commit: str | None,
        *,
        stalled: bool = False,
    ) -> Result:
        """``stalled``: ``commit`` stalled just now (its retry is due from now)."""
        result = Result(condition, reason, message, commit, self.clock())
        s = self.status
        if stalled:
            s.stalled_at = result.at
        if s.last is None or s.last.condition is not condition:
            s.since = result.at
        s.last = result
        s.last_attempted = commit or s.last_attempted
        s.reconciles[condition.value] = s.reconciles.get(condition.value, 0) + 1
        s.failures_in_a_row = 0 if condition is Condition.READY else s.failures_in_a_row + 1
        try:
            save_status(self.root, s)
        except OSError as exc:  # the loop goes on; the next reconcile writes it again
            self.emit(Notice(f"controller status not saved: {exc}"))
        self.emit(ReconcileFinished(condition.value, reason, message, commit))
        return result

    def next_wait(self, result: Result, rng: random.Random | None = None) -> float:
        """Seconds until the next reconcile (a webhook can wake it sooner)."""
        o = self.options
        rng = rng or random.Random()
        if result.condition is Condition.RETRY:
            n = max(0, self.status.failures_in_a_row - 1)
            return min(o.backoff_max, o.backoff_start * 2.0**n) * rng.uniform(0.8, 1.2)
        wait = o.interval * rng.uniform(1 - o.jitter, 1 + o.jitter)
        due = self._retry_due() if result.condition is Condition.STALLED else None
        if due is not None:  # not later than the stalled commit's retry
            wait = min(wait, max(0.0, due - self.clock()))
        return wait

    def run(self) -> None:
        """Reconcile until ``stopping`` is set; ``wake`` starts one at once."""
        while not self.stopping.is_set():
            self.wake.clear()
            result = self.reconcile()
            self.wake.wait(self.next_wait(result))


@dataclass(frozen=True)
class ReconcileFinished(Event):
    condition: str
    reason: str
    message: str
    commit: str | None
