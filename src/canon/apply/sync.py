"""The flows behind ``canon push``, ``canon fetch`` and ``canon pull``.

Each one: load the project, choose the remote (``-r NAME``, else the profile's
``remote:``, else ``default_remote``, else the only one), read ``canon.lock``,
take the roots of the current profile (or of the targets named), and hand
them to ``Transfer``. ``pull`` restores workspace paths, so it holds the repo
lock (an apply running at the same time would be writing them too); push and
fetch only read the workspace and add verified objects to the cache, which
is safe alongside anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from canon.apply.transfer import Transfer, TransferResult
from canon.declare.memo import load_project_memoised
from canon.declare.project import Project, RemoteSpec
from canon.digest import Digest
from canon.errors import CanonError, RemoteNotFoundError
from canon.events import Emit
from canon.observe.root import STATE_DIR
from canon.observe.workspace import Workspace
from canon.stores.lockfile import read_lock
from canon.stores.objects import ObjectStore
from canon.stores.references import Root, lock_roots, unknown_targets
from canon.stores.remotes import DEFAULT_JOBS, LazyRemote
from canon.stores.remotes.catalog import record_dir_for
from canon.stores.repolock import RepoLock


def choose_remote(project: Project, name: str | None) -> RemoteSpec:
    """The remote named ``name``, or the project's choice for this profile."""
    declared = ", ".join(project.remotes) or "none"
    if name is not None:
        if name not in project.remotes:
            raise RemoteNotFoundError(
                f'no remote named "{name}" (declared: {declared})',
                hint="declare it under remotes: in canon.yaml",
            )
        return project.remotes[name]
    if project.remote is None:
        if not project.remotes:
            raise RemoteNotFoundError(
                "canon.yaml declares no remotes",
                hint="add one, e.g.  remotes: {store: {url: /path/to/dir}}  "
                "or  {url: s3://bucket/prefix}",
            )
        raise RemoteNotFoundError(
            f"which remote? several are declared ({declared}) and none is the default",
            hint="pass -r NAME, set default_remote:, or give the profile remote: NAME",
        )
    return project.remotes[project.remote]


def _roots(root: Path, project: Project, targets: Sequence[str]) -> list[Root]:
    state = read_lock(root).state(project.profile)
    unknown = unknown_targets(state, targets)
    if unknown:
        raise CanonError(
            f"nothing in canon.lock is called {', '.join(repr(t) for t in unknown)}",
            hint="name a stage, a dataset (data.NAME) or an output path recorded in canon.lock",
        )
    return lock_roots(state, targets)


def transfer_for(
    root: Path, project: Project, remote_name: str | None, jobs: int | None, emit: Emit
) -> Transfer:
    spec = choose_remote(project, remote_name)
    return transfer_to(root, spec, Workspace(root).store, jobs, emit)


def transfer_to(
    root: Path, spec: RemoteSpec, store: ObjectStore, jobs: int | None, emit: Emit
) -> Transfer:
    """Objects between ``store`` and the remote ``spec``, recorded under ``root``'s state."""
    n = jobs or spec.jobs or DEFAULT_JOBS
    remote = LazyRemote(spec, root, jobs=n)
    return Transfer(store, remote, record_dir_for(root / STATE_DIR, remote), emit, jobs=n)


def run_push(
    root: Path,
    *,
    profile: str | None,
    remote: str | None = None,
    targets: Sequence[str] = (),
    jobs: int | None = None,
    emit: Emit,
) -> TransferResult:
    project = load_project_memoised(root, profile=profile)
    roots = _roots(root, project, targets)
    return transfer_for(root, project, remote, jobs, emit).push(roots)


def run_fetch(
    root: Path,
    *,
    profile: str | None,
    remote: str | None = None,
    targets: Sequence[str] = (),
    jobs: int | None = None,
    emit: Emit,
) -> TransferResult:
    project = load_project_memoised(root, profile=profile)
    roots = _roots(root, project, targets)
    return transfer_for(root, project, remote, jobs, emit).fetch(roots)


def run_pull(
    root: Path,
    *,
    profile: str | None,
    remote: str | None = None,
    targets: Sequence[str] = (),
    jobs: int | None = None,
    force: bool = False,
    emit: Emit,
    argv: Sequence[str] = (),
    wait: float = 0.0,
) -> TransferResult:
    project = load_project_memoised(root, profile=profile)
    roots = _roots(root, project, targets)
    transfer = transfer_for(root, project, remote, jobs, emit)
    with RepoLock(root / STATE_DIR / "apply.lock") as lock:
        lock.acquire(argv, wait=wait)
        with Workspace(root) as ws:

            def current(path: str) -> Digest | None:
                content = ws.content(path)
                return None if content is None else content.digest

            return transfer.pull(roots, root, current, force=force)
