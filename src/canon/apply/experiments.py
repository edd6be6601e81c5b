"""Running an experiment: the pipeline with overridden params, in a worktree of its own.

``run_experiment`` checks the base commit out into a temporary ``git
worktree`` under ``.canon/exps/wt/``, points its ``.canon/cache`` and
``.canon/runs`` at the main workspace's (so objects are shared and inputs seen
before — by the workspace or any other experiment — are restored, not re-run),
writes the overridden ``params.yaml`` there, applies its *stages* (never its
images or deployments: an experiment must not replace the live model, nor
spend minutes building images; see ``stages_only``), and records params +
``canon.lock`` + metrics as a commit on ``refs/canon/exps/<name>``
(``stores/exprefs.py``). The user's working tree and index are never touched,
and the worktree is removed afterwards.

A run that fails or is killed records no ref: the ref is written last, by
compare-and-swap, after the outputs are in the shared cache. A worktree left
behind by a killed run is removed by the next run (``prune_worktrees``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from canon.declare.memo import MEMO
from canon.declare.overrides import overrides_key
from canon.declare.project import Project
from canon.errors import CanonError, StageFailedError
from canon.events import Emit, Event, Notice
from canon.stores.exprefs import (
    PREFIX,
    Experiment,
    ExperimentRefs,
    check_name,
    git,
    git_start,
    git_wait,
    resolve_commit,
)

if TYPE_CHECKING:
    from canon.stores.records import ProfileState

WORKTREES = Path(".canon") / "exps" / "wt"
# .canon/ entries a worktree shares with the main workspace: objects and the run cache.
# Not the image layout: an experiment applies stages only (``stages_only``).
SHARED = ("cache", "runs")


@dataclass(frozen=True)
class ExperimentSpec:
    """What to run: a name, the params to override, the commit to start from."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    base: str = "HEAD"
    profile: str | None = None
    jobs: int = 1
    # base is a snapshot of uncommitted workspace changes: {"head": ..., "files": [...]}
    workspace: Mapping[str, Any] | None = None
    # added to every stage's environment (a back-test in its model commit's rebuilt venv:
    # ``executors/venv.py``). Set, the run cache is not shared: what it holds under a
    # stage's key may have run in another environment (the key names the declared one)
    stage_env: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "overrides": dict(self.overrides),
            "base": self.base,
            "profile": self.profile,
            "jobs": self.jobs,
        }
        if self.workspace:
            out["workspace"] = dict(self.workspace)
        return out

    @staticmethod
    def from_dict(raw: Mapping[str, Any]) -> ExperimentSpec:
        return ExperimentSpec(
            name=str(raw["name"]),
            overrides=dict(raw.get("overrides") or {}),
            base=str(raw.get("base") or "HEAD"),
            profile=raw.get("profile"),
            jobs=int(raw.get("jobs") or 1),
            workspace=raw.get("workspace") or None,
        )


def auto_name(overrides: Mapping[str, Any], base: str) -> str:
    """A readable, stable-ish name: the overridden values plus a short digest."""
    text = overrides_key(overrides) + base + os.urandom(16).hex()
    short = hashlib.sha256(text.encode()).hexdigest()[:6]
    parts = [f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in overrides.items()]
    stem = "_".join(parts)[:60]
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip(".-")
    return f"{safe}-{short}" if safe else f"exp-{short}"


def plan_experiments(
    root: Path,
    grid: Sequence[Mapping[str, Any]],
    *,
    name: str | None,
    base: str | None,
    profile: str | None,
    jobs: int = 1,
) -> list[ExperimentSpec]:
    """Specs for a sweep; every override is checked against the base's params first,
    so a typo fails before anything runs.

    ``base`` None: ``HEAD`` plus the workspace's uncommitted changes to tracked
    files, snapshot as a commit object on top of ``HEAD`` (as DVC includes them);
    the specs then say so (``ExperimentSpec.workspace``)."""
    from canon.declare.memo import load_project_memoised
    from canon.stores.exprefs import STATUS, snapshot_workspace

    status = git_start(root, *STATUS) if base is None else None  # beside the rev-parse
    try:
        commit = resolve_commit(root, base or "HEAD")
    except CanonError:
        if status is not None:
            status.communicate()  # reaped; the rev-parse's error is the one to report
        raise
    changes = git_wait(status) if status is not None else None
    workspace: dict[str, Any] | None = None
    if changes is not None:
        snap = snapshot_workspace(root, commit, changes)
        if snap is not None:
            workspace = {"head": commit, "files": snap[1]}
            commit = snap[0]
    names: list[str] = []
    for i, overrides in enumerate(grid):
        load_project_memoised(root, profile=profile, overrides=overrides)  # raises on a bad key
        if name is None:
            names.append(auto_name(overrides, commit))
        else:
            names.append(check_name(name if len(grid) == 1 else f"{name}-{i + 1}"))
    return [
        ExperimentSpec(n, dict(o), commit, profile, jobs, workspace=workspace)
        for n, o in zip(names, grid, strict=True)
    ]


def prune_worktrees(root: Path) -> None:
    """Remove worktrees whose run is gone (a killed experiment leaves one)."""
    base = root / WORKTREES
    if base.is_dir():
        for entry in base.iterdir():
            owner = entry.name.rsplit("-", 2)
            pid = int(owner[-2]) if len(owner) == 3 and owner[-2].isdigit() else None
            if pid is None or not _alive(pid):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:  # a private index beside its worktree (``index_of``)
                    entry.unlink(missing_ok=True)
    with contextlib.suppress(CanonError):
        git(root, "worktree", "prune")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_RACES = ("could not create", "failed to read", "Invalid path")  # see _add_worktree


def _add_worktree(
    root: Path,
    path: Path,
    commit: str,
    attempts: int = 5,
    meanwhile: Callable[[], object] | None = None,
) -> None:
    """``git worktree add``, retried when a parallel one got in its way: git reads every
    record under ``.git/worktrees/`` and fails on one another ``add`` is still writing
    ("failed to read …/commondir", "Invalid path …"), and a ``worktree remove`` deletes
    the then-empty ``.git/worktrees`` under it ("could not create directory of …").

    ``meanwhile()`` runs while the first attempt's git checks the tree out (on the
    other core): the caller's imports and checks cost no wall time then."""
    for attempt in range(attempts):
        proc = git_start(root, "worktree", "add", "--detach", "--quiet", str(path), commit)
        try:
            if meanwhile is not None:
                task, meanwhile = meanwhile, None
                task()
        finally:
            try:
                git_wait(proc)
                failure = None
            except CanonError as exc:
                failure = exc
        if failure is None:
            return
        if not any(m in failure.message for m in _RACES) or attempt == attempts - 1:
            raise failure
        shutil.rmtree(path, ignore_errors=True)
        _backoff(0.05 * (attempt + 1))


def _backoff(seconds: float) -> None:
    time.sleep(seconds)


def _admin_dir(path: Path) -> Path | None:
    """The worktree's record under ``.git/worktrees/``: named by its ``.git`` file, and
    naming it back (its ``gitdir`` file), else None (``git worktree prune`` drops it)."""
    try:
        text = (path / ".git").read_text()
        if not text.startswith("gitdir:"):
            return None
        admin = path / text.removeprefix("gitdir:").strip()  # absolute, or relative to path
        back = Path((admin / "gitdir").read_text().strip())  # absolute, or relative to admin
        if (
            admin.parent.name == "worktrees"
            and (admin / back).resolve() == (path / ".git").resolve()
        ):
            return admin
    except OSError:
        pass
    return None


def index_of(path: Path) -> Path:
    """The private index of the worktree at ``path`` (``ExperimentRefs.record``): beside
    it, as git checks the worktree out into an empty directory."""
    return path.with_name(path.name + ".index")


def _remove_worktree(path: Path, admin: Path | None) -> None:
    """What ``git worktree remove --force`` does, without a git process: the
    checkout, then its record. ``admin`` was read right after the checkout, before
    any stage ran (a stage could rewrite ``.git``). Killed in between, the record
    points at nothing and ``git worktree prune`` (``prune_worktrees``) drops it."""
    shutil.rmtree(path, ignore_errors=True)
    index_of(path).unlink(missing_ok=True)
    if admin is not None:
        # out of .git/worktrees/ in one rename first: a parallel `git worktree add`
        # reads every record there and fails on one that is half deleted
        doomed = admin.parent.parent / f"canon-removed-{admin.name}"
        try:
            os.rename(admin, doomed)
        except OSError:
            doomed = admin
        shutil.rmtree(doomed, ignore_errors=True)


@contextlib.contextmanager
def worktree(
    root: Path,
    commit: str,
    label: str,
    share: tuple[str, ...] = SHARED,
    meanwhile: Callable[[Path], object] | None = None,
) -> Any:
    """A detached worktree of ``commit`` sharing the main workspace's ``.canon/``
    entries named in ``share`` (the object cache and the run cache by default).
    ``meanwhile(path)`` runs while git checks it out at ``path``; if it raises, the
    worktree is removed and nothing else happens."""
    path = root / WORKTREES / f"{label}-{os.getpid()}-{os.urandom(4).hex()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    admin = None
    task = None if meanwhile is None else functools.partial(meanwhile, path)
    try:
        try:
            _add_worktree(root, path, commit, meanwhile=task)
        finally:
            admin = _admin_dir(path)  # read before anything runs in the worktree
        state = path / ".canon"
        state.mkdir(exist_ok=True)
        for name in share:
            (root / ".canon" / name).mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.symlink(root / ".canon" / name, state / name)
        with contextlib.suppress(OSError):  # the declaration memo: keyed by content, so safe
            shutil.copyfile(root / MEMO, path / MEMO)
        yield path
    finally:
        _remove_worktree(path, admin)


def prepare_params(tree: Path, profile: str | None, overrides: Mapping[str, Any]) -> Project:
    """Write the overridden params file into ``tree`` and return its project.

    The values written are the overridden project's own params (as canon read
    them), so the project loaded from the new file is this one: it is put in
    the worktree's declaration memo, and ``canon apply`` there starts without
    validating canon.yaml again."""
    import yaml

    from canon.declare.memo import load_project_memoised, remember_params

    project = load_project_memoised(tree, profile=profile, overrides=overrides)
    if not overrides:
        return project
    path = tree / project.params_file
    wanted = dict(project.params)
    text = _edited_params(path, wanted, overrides)
    if text is None:
        text = yaml.safe_dump(wanted, sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    remember_params(tree, project, profile=profile)
    return project


def _edited_params(path: Path, wanted: dict[str, Any], overrides: Mapping[str, Any]) -> str | None:
    """The params file with only the overridden values changed, in place: its comments
    and layout kept (``canon exp promote`` brings it back to the user's branch). None
    when that cannot be done exactly (checked: the edited text must read as ``wanted``)."""
    from canon.declare.yamledit import set_scalars
    from canon.declare.yamlsource import parse_yaml

    try:
        original = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    changes: dict[tuple[str, ...], Any] = {}
    for key in overrides:
        parts = tuple(str(key).split("."))
        value: Any = wanted
        for part in parts:
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        changes[parts] = value
    edited = set_scalars(original, changes)
    if edited is None:
        return None
    try:
        same = parse_yaml(edited.encode(), str(path)).data == wanted
    except CanonError:
        return None
    return edited if same else None


def failures(root: Path, tree: Path, name: str, outcomes: Any) -> str:
    """The failed stages of a run in worktree ``tree``, their logs kept under
    ``.canon/exps/logs/NAME`` (the worktree, and its .canon/logs, is removed)."""
    kept = root / ".canon" / "exps" / "logs" / name
    with contextlib.suppress(OSError):
        shutil.copytree(tree / ".canon" / "logs", kept, dirs_exist_ok=True)
    failed = "; ".join(f"{o.name}: {o.message}" for o in outcomes if o.status == "failed")
    return failed.replace(str(tree / ".canon" / "logs"), str(kept))


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value} if prefix else {}


def read_metrics(tree: Path, paths: Sequence[str]) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for rel in paths:
        with contextlib.suppress(OSError, ValueError):
            metrics.update(flatten(json.loads((tree / rel).read_bytes())))
    return metrics


def stages_only(project: Project) -> tuple[str, ...]:
    """Every stage of ``project``, as apply targets: an apply with targets plans the
    stages (and the datasets they read) only, never ``artifacts:`` or
    ``deployments:``. Experiments, back-tests and reproductions apply these: an
    experiment that rolled out a deployment would replace the live model with its
    own."""
    if not project.stages:
        from canon.stores.exprefs import ExperimentError

        raise ExperimentError(
            "the project declares no stages: an experiment has nothing to run",
            hint="declare stages under `stages:` in canon.yaml",
        )
    return tuple(project.stages)


def run_experiment(
    root: Path,
    spec: ExperimentSpec,
    emit: Emit,
    prepare: Callable[[Path], Mapping[str, Any]] | None = None,
) -> Experiment:
    """Run one experiment and record it; returns the recorded experiment.

    ``prepare(worktree)`` runs after the params are written and before the
    pipeline (a back-test swaps dataset pins there); what it returns is added to
    the recorded summary (provenance)."""
    check_name(spec.name)
    refs = ExperimentRefs(root)
    # a planned spec carries a resolved commit: `git worktree add` checks it (one git call less)
    full = len(spec.base) == 40 and all(c in "0123456789abcdef" for c in spec.base)
    commit = spec.base if full else resolve_commit(root, spec.base)
    index: list[Path] = []  # the private index the record will use, once read

    def meanwhile(path: Path) -> None:
        """While git checks the worktree out: is the name free, the record's private
        index (read from the base), and the imports of the apply machinery (tens of
        ms, the larger part of an experiment's own cost)."""
        probe = git_start(root, "rev-parse", "--verify", "--quiet", PREFIX + spec.name)
        reading = refs.read_tree_start(commit, index_of(path))
        try:
            import yaml  # noqa: F401  (the params file, the lock)

            import canon.apply.applier
            import canon.apply.session
            import canon.stores.ledger
            import canon.stores.repolock  # noqa: F401
        finally:
            probe.communicate()
            with contextlib.suppress(CanonError):  # else: the worktree's own index
                git_wait(reading)
                index.append(index_of(path))
        if probe.returncode == 0:  # the ref exists (the final compare-and-swap checks again)
            from canon.stores.exprefs import ExperimentError

            raise ExperimentError(
                f"experiment {spec.name!r} exists already",
                hint="pick another --name, or `canon exp remove` it first",
            )

    started = time.time()
    share = ("cache",) if spec.stage_env else SHARED
    with worktree(root, commit, spec.name, share=share, meanwhile=meanwhile) as tree:
        from canon.apply.outcomes import ApplyOptions
        from canon.apply.session import run_apply

        project = prepare_params(tree, spec.profile, spec.overrides)
        extra: dict[str, Any] = {}
        if prepare is not None:  # it may change the declaration (a back-test drops a stage)
            from canon.declare.memo import load_project_memoised

            extra = dict(prepare(tree))
            project = load_project_memoised(tree, profile=spec.profile)
        targets = stages_only(project)
        result = run_apply(
            tree,
            profile=spec.profile,
            targets=targets,
            options=ApplyOptions(jobs=spec.jobs, stage_env=dict(spec.stage_env)),
            emit=lock_committed_here(emit),
            argv=["canon", "exp", "run", spec.name],
            worktree_of=commit,
        )
        if not result.ok:
            detail = failures(root, tree, spec.name, result.outcomes)[:600]
            raise StageFailedError(
                f"experiment {spec.name} failed: {detail or 'a stage failed'}",
                hint="nothing was recorded; fix the stage and run the experiment again",
            )
        metric_paths = [m for s in project.stages.values() for m in s.metrics]
        files = {project.params_file: tree / project.params_file}
        if (tree / "canon.lock").is_file():
            files["canon.lock"] = tree / "canon.lock"
        files.update({m: tree / m for m in metric_paths if (tree / m).is_file()})
        lock_state = _lock_summary(tree, project.profile or "")
        summary = {
            "params": flatten(dict(project.params)),
            "overrides": dict(spec.overrides),
            "metrics": read_metrics(tree, metric_paths),
            "profile": project.profile,
            "created": round(started, 3),
            "duration": round(time.time() - started, 3),
            "stages": {o.name: o.status for o in result.outcomes},
            **lock_state,
            **({"workspace": dict(spec.workspace)} if spec.workspace else {}),
            **extra,
        }
        recorded = refs.record(
            spec.name, commit, files, summary, worktree=tree, index=next(iter(index), None)
        )
    emit(
        Notice(f"experiment {spec.name} recorded as {recorded[:12]} (refs/canon/exps/{spec.name})")
    )
    info = {k: v for k, v in summary.items() if k not in ("params", "overrides", "metrics")}
    params, metrics = summary["params"], summary["metrics"]
    return Experiment(spec.name, recorded, commit, params, dict(spec.overrides), metrics, info)


def lock_committed_here(emit: Emit) -> Emit:
    """apply's "commit canon.lock" advice does not apply: the experiment commits it (a
    reproduction's worktree is thrown away)."""

    def forward(event: Event) -> None:
        if isinstance(event, Notice) and event.message.startswith("canon.lock changed"):
            return
        emit(event)

    return forward


def _lock_summary(tree: Path, profile: str) -> dict[str, Any]:
    """Provenance for the summary: dataset pins and stage keys of this run."""
    from canon.stores.lockfile import read_lock

    try:
        state = read_lock(tree).state(profile)
    except CanonError:
        return {}
    return {**provenance_of(state), "stage_keys": {n: str(s.key) for n, s in state.stages.items()}}


def provenance_of(state: ProfileState) -> dict[str, Any]:
    """What a run came from, as its lock records it: the dataset pins (and, for a
    declared subset, the pin it was taken from) and the images (the base included)."""
    out: dict[str, Any] = {"datasets": {n: str(d.content.digest) for n, d in state.data.items()}}
    subsets = {
        n: {"of": d.subset_of.name, "digest": str(d.subset_of.digest)}
        for n, d in state.data.items()
        if d.subset_of is not None
    }
    if subsets:
        out["subsets"] = subsets
    if state.images:  # the images the base commit's lock records
        out["images"] = {n: str(i.digest) for n, i in state.images.items()}
    return out
