"""The experiment queue: specs waiting in ``.canon/exps/queue/``, run by workers.

Each queued experiment is one JSON file named ``<seq>-<name>.json`` and moves
through ``queued/`` -> ``running/`` -> ``done/`` or ``failed/`` by rename (a
rename is atomic, so a killed queue never leaves a torn entry; an entry left
in ``running/`` by a dead worker is put back by the next start). The result of
a finished experiment is its ref in Git; the queue only says what is left.

Workers are threads of this process running ``run_experiment`` (each in its
own worktree, each stage its own child process), or tasks on a Dask
distributed cluster (``executor="dask://HOST:PORT"``) that run the same
function on the workers, with Dask's retries when a worker dies.

Progress: local workers report each experiment's start and each of its stages
(``ExperimentProgress``, tagged with the experiment's name, from the worker
threads); every worker reports each experiment's end (``ExperimentFinished``,
with its metrics). Dask tasks run in other processes: only their ends are seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canon.apply.experiments import ExperimentSpec, prune_worktrees, run_experiment
from canon.errors import CanonError
from canon.events import Emit, Event, Notice, StageFinished, StageStarted, discard
from canon.executors.local import sharing_cores
from canon.stores.atomic import atomic_write

QUEUE = Path(".canon") / "exps" / "queue"
STATES = ("queued", "running", "done", "failed")


@dataclass(frozen=True)
class ExperimentFinished(Event):
    name: str
    ok: bool
    commit: str | None
    message: str
    duration: float
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentProgress(Event):
    """A local worker's experiment: ``stage`` "" and status "started" when it starts,
    then each stage as it starts ("running", "restoring") and ends (its status)."""

    name: str
    stage: str
    status: str


def progress_of(name: str, emit: Emit) -> Emit:
    """An experiment's stage events, told to ``emit`` as ``ExperimentProgress``."""

    def forward(event: Event) -> None:
        if isinstance(event, ExperimentProgress):
            emit(event)
        elif isinstance(event, StageStarted):
            emit(
                ExperimentProgress(
                    name, event.name, "running" if event.action == "run" else "restoring"
                )
            )
        elif isinstance(event, StageFinished):
            emit(ExperimentProgress(name, event.name, event.status))

    return forward


@dataclass(frozen=True)
class QueueEntry:
    state: str
    file: str
    spec: ExperimentSpec
    message: str = ""


class ExperimentQueue:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / QUEUE
        for state in STATES:
            (self.dir / state).mkdir(parents=True, exist_ok=True)

    def add(self, specs: Sequence[ExperimentSpec]) -> list[str]:
        files = []
        for spec in specs:
            name = f"{time.time_ns():020d}-{spec.name}.json"
            atomic_write(self.dir / "queued" / name, json.dumps(spec.to_dict()).encode())
            files.append(name)
        return files

    def entries(self) -> list[QueueEntry]:
        out = []
        for state in STATES:
            for path in sorted((self.dir / state).glob("*.json")):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    raw = json.loads(path.read_bytes())
                    out.append(
                        QueueEntry(
                            state,
                            path.name,
                            ExperimentSpec.from_dict(raw),
                            str(raw.get("message", "")),
                        )
                    )
        return out

    def _move(self, name: str, src: str, dst: str, message: str = "") -> None:
        path = self.dir / src / name
        if message:
            with contextlib.suppress(OSError, ValueError):
                raw = json.loads(path.read_bytes())
                raw["message"] = message
                atomic_write(path, json.dumps(raw).encode())
        os.replace(path, self.dir / dst / name)

    def claim(self) -> list[tuple[str, ExperimentSpec]]:
        """Move every queued entry to running/ (and requeue those a dead run left)."""
        running = self.dir / "running"
        for path in running.glob("*.json"):
            with contextlib.suppress(OSError):
                os.replace(path, self.dir / "queued" / path.name)
        claimed = []
        for path in sorted((self.dir / "queued").glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                spec = ExperimentSpec.from_dict(json.loads(path.read_bytes()))
                os.replace(path, running / path.name)
                claimed.append((path.name, spec))
        return claimed

    def clear(self, states: Sequence[str] = ("done", "failed")) -> int:
        n = 0
        for state in states:
            for path in (self.dir / state).glob("*.json"):
                path.unlink(missing_ok=True)
                n += 1
        return n

    def start(
        self, *, jobs: int, emit: Emit, executor: str | None = None
    ) -> list[ExperimentFinished]:
        """Run everything queued, ``jobs`` at a time; returns one result per experiment."""
        claimed = self.claim()
        if not claimed:
            return []
        prune_worktrees(self.root)
        if executor:
            from canon.executors.dask import DaskPool

            pool: Any = DaskPool(executor, workers_hint=jobs)
        else:
            pool = ThreadPool(jobs, lambda name: progress_of(name, emit))
        results: list[ExperimentFinished] = []
        emit(Notice(f"running {len(claimed)} queued experiment(s), {jobs} at a time"))
        # local workers share this machine's cores: their stages' numeric libraries get
        # cores // N threads each (executors/local.py), not N times all the cores
        left = len(claimed)
        with sharing_cores(1 if executor else min(jobs, left)) as share:
            try:
                jobs_ = [(name, spec.to_dict()) for name, spec in claimed]
                for name, outcome in pool.map(run_queued, str(self.root), jobs_):
                    spec = dict(claimed)[name]
                    ok = isinstance(outcome, dict)
                    done = ExperimentFinished(
                        name=spec.name,
                        ok=ok,
                        commit=outcome["commit"] if ok else None,
                        message="" if ok else str(outcome),
                        duration=float(outcome.get("duration", 0.0)) if ok else 0.0,
                        metrics=dict(outcome.get("metrics") or {}) if ok else {},
                    )
                    left -= 1
                    if not executor:
                        share.update(min(jobs, left))  # the last ones get more threads
                    self._move(name, "running", "done" if ok else "failed", done.message)
                    emit(done)
                    results.append(done)
            finally:
                pool.close()
        return results


def run_queued(root: str, raw: dict[str, Any], emit: Emit = discard) -> dict[str, Any]:
    """One queued experiment, as a plain function (picklable for Dask workers)."""
    spec = ExperimentSpec.from_dict(raw)
    start = time.monotonic()
    exp = run_experiment(Path(root), spec, emit)
    return {
        "commit": exp.commit,
        "duration": round(time.monotonic() - start, 3),
        "metrics": dict(exp.metrics),
    }


class ThreadPool:
    """Local workers: threads, each running one experiment (its stages are processes)."""

    def __init__(self, jobs: int, progress: Callable[[str], Emit] | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        self._progress = progress

    def map(
        self,
        fn: Callable[[str, dict[str, Any], Emit], dict[str, Any]],
        root: str,
        jobs: Sequence[tuple[str, dict[str, Any]]],
    ) -> Iterator[tuple[str, dict[str, Any] | str]]:
        futures = {self._pool.submit(self._one, fn, root, raw): name for name, raw in jobs}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except CanonError as exc:
                yield futures[future], exc.message
            except Exception as exc:  # a worker bug must not lose the other results
                yield futures[future], f"{type(exc).__name__}: {exc}"

    def _one(
        self,
        fn: Callable[[str, dict[str, Any], Emit], dict[str, Any]],
        root: str,
        raw: dict[str, Any],
    ) -> dict[str, Any]:
        name = str(raw.get("name", ""))
        emit = self._progress(name) if self._progress is not None else discard
        emit(ExperimentProgress(name, "", "started"))
        return fn(root, raw, emit)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
