"""``apply``: the only writer. Walks a plan, parallel where the graph allows.

The main thread owns every decision and every metadata write (lock, run
cache, ledger); worker threads only run commands, hash and store outputs, and
restore from the cache. A stage's inputs are looked at again right before it
starts, because an upstream stage that just ran may have produced the same
bytes as before (then this stage is up to date: early cut-off) or bytes seen
in an earlier run (then its outputs come from the run cache).

Order of writes for one stage, so a crash at any point is harmless:
outputs stored in the object store -> run cache entry -> canon.lock -> ledger.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from canon import failpoints
from canon.apply.materialise import Mounts
from canon.apply.outcomes import ApplyOptions, ApplyResult, StageOutcome
from canon.apply.pinning import pin_dataset
from canon.declare.project import DepKind, Project, StageSpec
from canon.digest import Digest
from canon.errors import CanonError, DataError, InterruptedError_, PathError, StateError
from canon.events import (
    ApplyFinished,
    ApplyStarted,
    DatasetFetching,
    DatasetPinned,
    Emit,
    Notice,
    StageFinished,
    StageOutput,
    StageStarted,
)
from canon.executors.local import Runner
from canon.graph.pipeline import Pipeline
from canon.observe.workspace import Workspace
from canon.plan.change import Action, Change, Plan, Reason
from canon.plan.key import recorded_env, stage_key
from canon.stores.ledger import Ledger
from canon.stores.lockfile import render_lock, write_lock
from canon.stores.records import (
    Content,
    Lock,
    ProfileState,
    RunRecord,
    StageRecord,
)

# the options and outcomes live in outcomes.py; callers import them from here too
__all__ = ["Applier", "ApplyOptions", "ApplyResult", "StageOutcome"]


@dataclass(frozen=True)
class _Decision:
    action: Action  # RUN, RESTORE or NOOP
    key: Digest
    deps: Mapping[str, Digest]
    outs: Mapping[str, Content] = field(default_factory=dict)  # what RESTORE brings back
    note: str | None = None  # why it does not do what the plan said (recorded in the ledger)


@dataclass(frozen=True)
class _Done:
    """What a worker hands back to the main thread."""

    name: str
    decision: _Decision
    status: str
    duration: float
    outs: Mapping[str, Content] = field(default_factory=dict)
    exit_code: int | None = None
    message: str = ""
    damaged: str | None = None  # the output a RESTORE could not restore from the cache


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


class Applier:
    def __init__(
        self,
        project: Project,
        pipeline: Pipeline,
        ws: Workspace,
        runner: Runner,
        ledger: Ledger,
        lock: Lock,
        emit: Emit,
        options: ApplyOptions,
    ) -> None:
        self.project = project
        self.pipeline = pipeline
        self.ws = ws
        self.runner = runner
        self.ledger = ledger
        self.lock = lock
        self.emit = emit
        self.options = options
        self.environment: Digest | None = None
        self.lock_written = False
        self._lock_at_start = render_lock(lock)
        self.mounts = Mounts(ws)

    # -- metadata (main thread only) -------------------------------------------------

    def _state(self) -> ProfileState:
        return self.lock.state(self.project.profile)

    def _save_lock(self, state: ProfileState) -> None:
        state = replace(state, environment=self.environment)
        self.lock = self.lock.with_state(self.project.profile, state)
        failpoints.hit("lock.before_write")
        write_lock(self.ws.root, self.lock)
        self.lock_written = True

    # -- the walk --------------------------------------------------------------------

    def apply(self, plan: Plan, environment: Digest, apply_id: int) -> ApplyResult:
        self.environment = environment
        started = time.monotonic()
        stages = [c for c in plan.changes if c.kind == "stage"]
        self.emit(ApplyStarted(plan.profile, tuple(c.name for c in stages), len(plan.pending)))
        pinned = self._pin(plan)

        changes = {c.name: c for c in stages}
        order = [c.name for c in stages]
        outcomes: dict[str, StageOutcome] = {}
        running: dict[Future[_Done], str] = {}
        stop = False
        with ThreadPoolExecutor(max_workers=max(1, self.options.jobs)) as pool:
            try:
                while True:
                    for name in order:
                        if name in outcomes or name in running.values() or stop:
                            continue
                        ups = [u for u in self.pipeline.upstream(name) if u in changes]
                        if any(u not in outcomes for u in ups):
                            continue
                        bad = [u for u in ups if outcomes[u].status in ("failed", "skipped")]
                        if bad:
                            outcomes[name] = self._skip(name, f"upstream {bad[0]} failed")
                            continue
                        if len(running) >= max(1, self.options.jobs):
                            break
                        started_job = self._start(changes[name], pool, apply_id)
                        if isinstance(started_job, StageOutcome):
                            outcomes[name] = started_job
                        else:
                            running[started_job] = name
                    if not running:
                        if stop or all(n in outcomes for n in order):
                            break
                        continue
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for fut in done:
                        name = running.pop(fut)
                        again = self._rerun_if_damaged(fut, changes[name], pool)
                        if again is not None:
                            running[again] = name
                            continue
                        outcome = self._finish(fut, apply_id)
                        outcomes[name] = outcome
                        if outcome.status == "failed" and not self.options.keep_going:
                            stop = True
            except KeyboardInterrupt as exc:
                self.runner.stop_all()
                for fut in running:
                    fut.cancel()
                signum = getattr(exc, "signum", 2)
                raise InterruptedError_(
                    ("terminated (SIGTERM)" if signum == 15 else "interrupted")
                    + f"; stopped {len(running)} running stage(s)",
                    hint="finished stages are recorded; `canon apply` runs the rest",
                    signal=signum,
                ) from None

        for name in order:
            if name not in outcomes:
                outcomes[name] = self._skip(name, "not started after an earlier failure")
        result = ApplyResult(
            ok=all(o.status not in ("failed", "skipped") for o in outcomes.values()),
            outcomes=tuple(outcomes[n] for n in order),
            pinned=pinned,
            duration=time.monotonic() - started,
            failed=tuple(n for n in order if outcomes[n].status == "failed"),
        )
        counts: dict[str, int] = {"pinned": len(pinned)} if pinned else {}
        for o in result.outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
        if self.lock_written and render_lock(self.lock) != self._lock_at_start:
            self.emit(Notice("canon.lock changed: commit it to record this state"))
        self.emit(ApplyFinished(result.ok, result.duration, counts))
        return result

    def _skip(self, name: str, why: str) -> StageOutcome:
        self.emit(StageFinished(name, "skipped", message=why))
        return StageOutcome(name, "skipped", message=why)

    # -- datasets --------------------------------------------------------------------

    def _pin(self, plan: Plan) -> tuple[str, ...]:
        """Pin what the plan says (never-pinned datasets, re-derived subsets),
        parents before subsets; each pin: objects, then the lock."""
        pinned: list[str] = []
        for change in plan.changes:
            if change.kind != "data":
                continue
            if change.action is Action.UPDATE:
                self.emit(
                    Notice(
                        f"{change.address}: the declaration no longer matches the pin "
                        f"({'; '.join(w.describe() for w in change.reasons)}); stages keep "
                        f"the pinned content until `canon data update {change.name}`"
                    )
                )
                continue
            if change.action is not Action.PIN:
                continue
            ds = self.project.datasets[change.name]
            record = pin_dataset(
                ds,
                self.ws,
                self._state(),
                lambda name, n, b: self.emit(DatasetFetching(name, n, b)),
            )
            self._save_lock(self._state().with_dataset(change.name, record))
            content = record.content
            self.emit(DatasetPinned(change.name, content.digest, content.nfiles, content.size))
            pinned.append(change.name)
        return tuple(pinned)

    def _mount(self, stage: StageSpec) -> None:
        """The pinned content of every dataset ``stage`` reads, at its mount."""
        for dep in stage.deps:
            if dep.kind is not DepKind.DATA:
                continue
            name = dep.address[len("data.") :]
            pin = self._state().data.get(name)
            if pin is None:
                raise DataError(f'stage "{stage.name}": data.{name} is not pinned')
            self.mounts.ensure(self.project.datasets[name], pin, self._state())

    # -- one stage -------------------------------------------------------------------

    def _decide(self, stage: StageSpec, change: Change) -> _Decision:
        deps: dict[str, Digest] = {}
        for dep in stage.deps:
            if dep.kind is DepKind.DATA:  # the pin wins
                pin = self._state().data.get(dep.address[len("data.") :])
                if pin is None:
                    raise DataError(f'stage "{stage.name}": {dep.address} is not pinned')
                deps[dep.address] = pin.content.digest
                continue
            content = self.ws.content(dep.path)
            if content is None:
                raise PathError(
                    f'stage "{stage.name}": its dep "{dep.address}" does not exist',
                    hint="an upstream stage did not produce it, or the file was removed",
                )
            deps[dep.address] = content.digest
        assert self.environment is not None
        key = stage_key(stage, deps, self.environment)
        if self.options.rerun or (
            self.options.force and any(w.reason is Reason.FORCED for w in change.reasons)
        ):
            return _Decision(Action.RUN, key, deps)
        record = self._state().stages.get(stage.name)
        if record is not None and record.key == key:
            current = {o: self.ws.content(o) for o in stage.outs}
            if all(current[o] and current[o] == record.outs.get(o) for o in stage.outs):
                return _Decision(Action.NOOP, key, deps, record.outs)
            if all(self.ws.store.has(c.digest) for c in record.outs.values()):
                return _Decision(Action.RESTORE, key, deps, record.outs)
        run = self.ws.runs.get(key)
        if run is not None and all(self.ws.store.has(c.digest) for c in run.outs.values()):
            return _Decision(Action.RESTORE, key, deps, run.outs)
        return _Decision(Action.RUN, key, deps)

    def _start(
        self, change: Change, pool: ThreadPoolExecutor, apply_id: int
    ) -> Future[_Done] | StageOutcome:
        stage = self.project.stages[change.name]
        if change.action is Action.NOOP:
            return StageOutcome(stage.name, "up-to-date", key=change.key)
        try:
            decision = self._decide(stage, change)
        except CanonError as exc:
            self.emit(StageFinished(stage.name, "failed", message=exc.message))
            self._record(apply_id, stage.name, "run", "failed", None, {}, 0.0, None)
            return StageOutcome(stage.name, "failed", message=exc.message)
        if decision.action is Action.NOOP:
            self.emit(StageFinished(stage.name, "up-to-date", message="inputs unchanged"))
            return StageOutcome(stage.name, "up-to-date", key=decision.key)
        if decision.action is Action.RUN:
            try:
                self._mount(stage)
            except CanonError as exc:
                self.emit(StageFinished(stage.name, "failed", message=exc.message))
                self._record(apply_id, stage.name, "run", "failed", None, {}, 0.0, None)
                return StageOutcome(stage.name, "failed", message=exc.message)
        reasons = tuple(w.describe() for w in change.reasons)
        self.emit(StageStarted(stage.name, decision.action.value, reasons))
        return pool.submit(self._work, stage, decision, change)

    def _work(self, stage: StageSpec, decision: _Decision, change: Change) -> _Done:
        """A worker's whole job for one stage; a CanonError fails the stage, not the apply."""
        t0 = time.monotonic()
        try:
            if decision.action is Action.RESTORE:
                return self._restore(stage, decision)
            return self._run(stage, decision, change)
        except CanonError as exc:
            return _Done(stage.name, decision, "failed", time.monotonic() - t0, message=exc.message)

    def _restore(self, stage: StageSpec, decision: _Decision) -> _Done:
        t0 = time.monotonic()
        for out in stage.outs:
            content = decision.outs[out]
            self._keep_if_unsaved(out, content)
            try:
                self.ws.store.restore(content.digest, self._abs(out), is_dir=content.is_dir)
            except StateError as exc:  # IntegrityError: corrupt; StateError: gone since _decide
                # its inputs are all present (_decide hashed them): running it is the repair
                return _Done(
                    stage.name,
                    decision,
                    "failed",
                    time.monotonic() - t0,
                    message=f"cannot restore {out} from the cache: {exc.message}",
                    damaged=out,
                )
        return _Done(stage.name, decision, "restored", time.monotonic() - t0, decision.outs)

    def _rerun_if_damaged(
        self, fut: Future[_Done], change: Change, pool: ThreadPoolExecutor
    ) -> Future[_Done] | None:
        """A restore that met a damaged cache object runs the stage instead (main
        thread: the datasets it reads are mounted first); None when it cannot."""
        done = fut.result()
        if done.damaged is None:
            return None
        stage = self.project.stages[done.name]
        try:
            self._mount(stage)
        except CanonError:
            return None  # fails with the restore's message
        # the damaged objects go, so the run's outputs are stored afresh
        self.ws.store.drop(self._damaged(done.decision.outs[done.damaged]))
        note = f"ran instead of restoring: {done.message}"
        self.emit(
            Notice(
                f"{stage.name}: {note}; it was removed from the cache "
                "(`canon cache verify --repair` checks every object)"
            )
        )
        self.emit(StageStarted(stage.name, Action.RUN.value, (f"CACHE_DAMAGED {done.damaged}",)))
        decision = replace(done.decision, action=Action.RUN, note=note)
        return pool.submit(self._work, stage, decision, change)

    def _damaged(self, content: Content) -> list[Digest]:
        """The objects of ``content`` that are missing or do not hash to their digest."""
        store = self.ws.store
        if not store.verify(content.digest):
            return [content.digest]
        if not content.is_dir:
            return []
        return [e.digest for e in store.manifest(content.digest) if not store.verify(e.digest)]

    def _keep_if_unsaved(self, out: str, replacing: Content | None) -> None:
        """Nothing is lost: an output edited by hand is saved to the cache (and
        named in a notice) before canon replaces it."""
        current = self.ws.content(out)
        if current is None or (replacing and current.digest == replacing.digest):
            return
        if not self.ws.store.has(current.digest):
            self._store_path(out)
            self.emit(Notice(f"{out} had unsaved changes; kept in the cache as {current.digest}"))

    def _run(self, stage: StageSpec, decision: _Decision, change: Change) -> _Done:
        modified = any(w.reason is Reason.OUTPUT_MODIFIED for w in change.reasons)
        for out in stage.outs:
            if modified:
                self._keep_if_unsaved(out, None)
            path = self._abs(out)
            _remove(path)
            path.parent.mkdir(parents=True, exist_ok=True)
        result = self.runner.run(
            stage, self.ws.root, lambda line: self.emit(StageOutput(stage.name, line))
        )
        failpoints.hit("stage.after_run")
        if result.exit_code != 0:
            tail = "\n".join(result.tail[-5:])
            return _Done(
                stage.name,
                decision,
                "failed",
                result.duration,
                exit_code=result.exit_code,
                message=f"exit code {result.exit_code}; log: {result.log}\n{tail}".rstrip(),
            )
        missing = [o for o in stage.outs if not self._abs(o).exists()]
        if missing:
            return _Done(
                stage.name,
                decision,
                "failed",
                result.duration,
                exit_code=0,
                message=f"the command succeeded but did not write {', '.join(missing)}",
            )
        outs = {out: self._store_path(out) for out in stage.outs}
        return _Done(stage.name, decision, "ran", result.duration, outs, exit_code=0)

    def _store_path(self, path: str) -> Content:
        snap = self.ws.snapshot(path)
        if snap is None:
            raise PathError(f"{path} disappeared while canon was storing it")
        content, manifest = snap
        if manifest is not None:
            self.ws.store.add_tree(self._abs(path), manifest)
        else:
            self.ws.store.add_file(self._abs(path), content.digest)
        return content

    def _abs(self, rel: str) -> Path:
        return self.ws.root / rel

    def _finish(self, fut: Future[_Done], apply_id: int) -> StageOutcome:
        done = fut.result()
        stage = self.project.stages[done.name]
        action = done.decision.action.value
        if done.status == "failed":
            self._record(
                apply_id,
                done.name,
                action,
                "failed",
                done.decision.key,
                {},
                done.duration,
                done.exit_code,
                done.decision.note,
            )
            self.emit(
                StageFinished(done.name, "failed", done.duration, done.exit_code, done.message)
            )
            return StageOutcome(done.name, "failed", done.duration, done.exit_code, done.message)
        self.ws.runs.put(RunRecord(done.decision.key, done.outs))
        record = StageRecord(
            key=done.decision.key,
            cmd=stage.argv,
            environment=self.environment or Digest(""),
            deps=dict(done.decision.deps),
            params=dict(stage.param_values),
            outs=dict(done.outs),
            env=recorded_env(stage),
        )
        self._save_lock(self._state().with_stage(done.name, record))
        self._record(
            apply_id,
            done.name,
            action,
            done.status,
            done.decision.key,
            {p: c.digest for p, c in done.outs.items()},
            done.duration,
            done.exit_code,
            done.decision.note,
        )
        self.emit(
            StageFinished(
                done.name, done.status, done.duration, done.exit_code, metrics=self._metrics(stage)
            )
        )
        return StageOutcome(
            done.name, done.status, done.duration, done.exit_code, key=done.decision.key
        )

    def _record(
        self,
        apply_id: int,
        stage: str,
        action: str,
        status: str,
        key: str | None,
        outputs: Mapping[str, str],
        duration: float,
        exit_code: int | None,
        reason: str | None = None,
    ) -> None:
        self.ledger.record_stage(
            apply_id,
            stage=stage,
            action=action,
            status=status,
            key=key,
            outputs=outputs,
            duration=duration,
            exit_code=exit_code,
            reason=reason,
        )

    def _metrics(self, stage: StageSpec) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for path in stage.metrics:
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(self._abs(path).read_bytes())
                if isinstance(data, dict):
                    values.update({k: v for k, v in data.items() if isinstance(v, int | float)})
        return values
