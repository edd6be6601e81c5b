"""The top-level flows the faces call: status, plan, apply.

Each flow is load -> graph -> observe -> plan (-> apply). ``apply`` holds the
workspace lock for the whole flow, so what it observed is what it changes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from canon.declare.memo import load_project_memoised
from canon.declare.project import Project
from canon.errors import CanonError, InterruptedError_, StalePlanError, StateError
from canon.graph.pipeline import Pipeline, build_pipeline
from canon.observe.workspace import Workspace, head_commit, observe
from canon.plan.change import Plan
from canon.plan.observed import Observed
from canon.plan.planner import PlanOptions, plan, stage_targets

if TYPE_CHECKING:  # the apply machinery is imported only by run_apply: status stays fast
    from canon.apply.applier import ApplyOptions, ApplyResult
    from canon.events import Emit


def load(root: Path, profile: str | None) -> tuple[Project, Pipeline]:
    project = load_project_memoised(root, profile=profile)
    pipeline = build_pipeline(project, lambda p: os.path.lexists(root / p))
    return project, pipeline


@dataclass(frozen=True)
class Planned:
    project: Project
    pipeline: Pipeline
    observed: Observed
    plan: Plan


def make_plan(
    root: Path,
    *,
    profile: str | None,
    targets: Sequence[str] = (),
    force: bool = False,
    ws: Workspace | None = None,
    with_commit: bool = False,
    drift: bool = False,
    head: str | None = None,
) -> Planned:
    """Load, observe, plan. ``drift``: also compare pinned datasets' sources with
    their pins (reported, never applied). ``head``: the commit checked out, when the
    caller knows it (``with_commit`` then needs no git process)."""
    project, pipeline = load(root, profile)
    own = ws is None
    ws = ws or Workspace(root)
    try:
        targets = stage_targets(project, targets)
        options = PlanOptions(tuple(targets), force)
        stages = pipeline.select(targets) if targets else None
        commit = (head or head_commit(root)) if with_commit else None
        observed = observe(project, pipeline, ws, stages, commit=commit, drift=drift)
        if project.artifacts and not targets:
            from canon.observe.images import observe_images

            images = observe_images(root, project, observed.lock.state(project.profile))
            observed = replace(observed, images=images)
        if project.deployments and not targets:
            from canon.apply.deployments import observe_deployments

            observed = replace(observed, deployments=observe_deployments(root, project))
        return Planned(project, pipeline, observed, plan(project, pipeline, observed, options))
    finally:
        if own:
            ws.close()


def read_plan_file(path: Path) -> Plan:
    try:
        return Plan.from_dict(json.loads(path.read_bytes()))
    except FileNotFoundError:
        raise CanonError(
            f"plan file {path} does not exist", hint="make one with `canon plan --out FILE`"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(
            f"{path} is not a canon plan: {exc}", hint="make one with `canon plan --out FILE`"
        ) from exc


def run_apply(
    root: Path,
    *,
    profile: str | None,
    targets: Sequence[str] = (),
    options: ApplyOptions | None = None,
    plan_file: Path | None = None,
    emit: Emit,
    argv: Sequence[str] = (),
    wait: float = 0.0,
    executor: str | None = None,
    worktree_of: str | None = None,
) -> ApplyResult:
    """``executor``: ``dask://HOST:PORT`` runs the stages on a Dask cluster
    (executors/dask.py); default: local child processes. ``worktree_of``: ``root``
    is a throwaway worktree of this commit (an experiment's): its ledger, removed
    with it, is kept in memory, and its commit is not asked of git."""
    from canon.apply.applier import Applier, ApplyOptions
    from canon.events import Notice
    from canon.executors.local import LocalRunner, Runner, reap_orphans
    from canon.stores.ledger import Ledger
    from canon.stores.repolock import RepoLock

    options = options or ApplyOptions()
    saved = read_plan_file(plan_file) if plan_file else None
    if saved is not None:
        if profile is not None and profile != saved.profile:
            raise StalePlanError(
                f"the plan was made for profile {saved.profile!r}, not {profile!r}",
                hint="run `canon plan` again with the profile you want",
            )
        profile, targets = saved.profile, saved.targets
    state = root / ".canon"
    with RepoLock(state / "apply.lock") as repo_lock:
        repo_lock.acquire(argv, wait=wait)
        if repo_lock.previous is not None:
            reaped = reap_orphans(state / "run")
            orphans = f" and stopping its {len(reaped)} orphaned stage(s)" if reaped else ""
            emit(
                Notice(
                    f"an earlier apply (pid {repo_lock.previous.pid}) died without finishing; "
                    f"taking over{orphans}"
                )
            )
        with Workspace(root, stage_new_data=True) as ws:
            planned = make_plan(
                root,
                profile=profile,
                targets=targets,
                force=options.force,
                ws=ws,
                with_commit=True,
                head=worktree_of,
            )
            current = planned.plan
            if saved is not None and (
                saved.fingerprint != current.fingerprint or saved.commit != current.commit
            ):
                raise StalePlanError(
                    "the saved plan is stale: the workspace, the declaration or the commit "
                    "changed since it was made",
                    hint="run `canon plan` again",
                )
            # connect before the ledger records an apply: an unreachable cluster is an error
            runner: Runner = LocalRunner(state / "run", state / "logs", options.stage_env)
            if executor:
                from canon.apply.remotestage import dask_runner

                runner = dask_runner(executor, ws, planned.project, state / "logs")
            ledger = Ledger(Path(":memory:") if worktree_of else state / "ledger.db")
            try:
                from canon.stores.records import DEFAULT_PROFILE

                # the profile the lock records this under: "default" when none is declared
                apply_id = ledger.begin_apply(
                    current.commit, current.profile or DEFAULT_PROFILE, argv
                )
                applier = Applier(
                    planned.project,
                    planned.pipeline,
                    ws,
                    runner,
                    ledger,
                    planned.observed.lock,
                    emit,
                    options,
                )
                status = "interrupted"
                try:
                    result = applier.apply(current, planned.observed.environment, apply_id)
                    if result.ok and any(c.kind == "image" for c in current.pending):
                        from canon.apply.images import build_locked

                        built = build_locked(root, profile=profile, names=(), emit=emit)
                        for image in built.built:
                            emit(Notice(f"built image.{image.name} {image.manifest.digest}"))
                    deploy = [c.name for c in current.pending if c.kind == "deployment"]
                    if result.ok and deploy:
                        from canon.apply.deployments import roll_out_checked

                        roll_out_checked(root, profile=profile, names=deploy, emit=emit)
                    status = "succeeded" if result.ok else "failed"
                    return result
                except InterruptedError_:
                    status = "interrupted"  # Ctrl-C / SIGTERM while stages ran
                    raise
                except CanonError:
                    status = "failed"
                    raise
                finally:
                    applier.mounts.close()
                    ledger.finish_apply(apply_id, status)
                    close = getattr(runner, "close", None)
                    if close is not None:
                        close()
            finally:
                ledger.close()
