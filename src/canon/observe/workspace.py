"""Observe the workspace: what every declared path holds right now.

``Workspace`` is the one handle on a project's local state (``.canon/``: stat
cache, object store, run cache). ``observe(project, pipeline, ws)`` reads,
never writes, anything that matters, and returns the ``Observed`` value the
pure planner works from.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from canon.declare.project import DataKind, DepKind, Project
from canon.digest import Digest
from canon.errors import CanonError
from canon.graph.pipeline import Pipeline
from canon.observe.content import ContentReader
from canon.observe.root import STATE_DIR, stat_cache_path
from canon.plan.key import environment_digest, stage_key
from canon.plan.observed import Observed
from canon.stores.lockfile import read_lock
from canon.stores.manifest import Manifest
from canon.stores.objects import ObjectStore
from canon.stores.records import Content, Lock, RunRecord
from canon.stores.runcache import RunCache
from canon.stores.statcache import StatCache


class MissingInputError(CanonError):
    code = "observe.missing_input"


class Workspace:
    """The project root and its ``.canon/`` state. Thread-safe for hashing."""

    def __init__(self, root: Path, *, stage_new_data: bool = False) -> None:
        """``stage_new_data``: the caller (an apply) is about to pin datasets, so a
        never-pinned dataset's files are copied into the cache as they are hashed
        (one read instead of two; see ``ObjectStore.hash_and_stage``)."""
        self.root = root
        self.stage_new_data = stage_new_data
        self.state = root / STATE_DIR
        self.store = ObjectStore(self.state / "cache")
        self.runs = RunCache(self.state / "runs")
        self._statcache: StatCache | None = None
        self._reader: ContentReader | None = None
        self._guard = threading.RLock()

    @property
    def reader(self) -> ContentReader:
        if self._reader is None:
            self._statcache = StatCache(stat_cache_path(self.root))
            self._reader = ContentReader(self.root, self._statcache)
        return self._reader

    def content(self, path: str, *, new_data: bool = False) -> Content | None:
        """What is at ``path``; ``new_data``: it is a dataset about to be pinned."""
        with self._guard:
            if new_data and self.stage_new_data:
                return self.reader.content(path, self.store.hash_and_stage)
            return self.reader.content(path)

    def snapshot(
        self, path: str, *, just_observed: bool = False
    ) -> tuple[Content, Manifest | None] | None:
        """Content plus, for a directory, its manifest (to store it, or to compare it);
        ``just_observed``: see ``ContentReader.snapshot``."""
        with self._guard:
            return self.reader.snapshot(path, just_observed=just_observed)

    def close(self) -> None:
        with self._guard:
            self.store.discard_staged()
            if self._statcache is not None:
                self._statcache.close()
                self._statcache = None
                self._reader = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def head_commit(root: Path) -> str | None:
    import subprocess  # apply asks for the commit; status never does

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def observe_environment(project: Project, ws: Workspace) -> Digest:
    env = project.environment
    requirements: Digest | None = None
    if env.requirements:
        content = ws.content(env.requirements)
        if content is None or content.is_dir:
            raise MissingInputError(
                f"environment.requirements: {env.requirements} does not exist",
                hint="create the lock (e.g. `pip freeze > requirements.lock`) or remove the key",
            )
        requirements = content.digest
    python = env.python or "{}.{}".format(*sys.version_info[:2])
    return environment_digest(python, requirements)


def observe(
    project: Project,
    pipeline: Pipeline,
    ws: Workspace,
    stages: Iterable[str] | None = None,
    *,
    lock: Lock | None = None,
    commit: str | None = None,
    drift: bool = False,
) -> Observed:
    """What the planner needs. ``drift``: also compare every pinned dataset's
    source with its pin (``canon status``; one listing per URL source)."""
    from canon.observe.data import observe_data

    selected = list(pipeline.order if stages is None else stages)
    paths: dict[str, None] = {}
    data_used: set[str] = set()
    for name in selected:
        stage = project.stages[name]
        for dep in stage.deps:
            if dep.kind is DepKind.DATA:
                data_used.add(dep.address.partition(".")[2])
            else:
                paths[dep.path] = None
        for out in stage.outs:
            paths[out] = None
    contents = {p: ws.content(p) for p in paths}
    lock = read_lock(ws.root) if lock is None else lock
    state = lock.state(project.profile)
    data = observe_data(project, ws, state, project.datasets, drift=drift)
    for name in sorted(data_used):
        ds = project.datasets[name]
        if ds.kind is DataKind.PATH and data[name].missing and name not in state.data:
            raise MissingInputError(
                f'data.{name}: its source "{ds.source}" does not exist',
                hint=f"put the data at {ds.path} or point the profile at it",
            )

    environment = observe_environment(project, ws)
    pins: dict[str, Digest] = {n: r.content.digest for n, r in state.data.items()}
    for name, seen in data.items():
        if name not in pins and seen.source is not None:
            pins[name] = seen.source.digest  # a workspace source about to be pinned

    runs: dict[Digest, RunRecord] = {}
    wanted: set[Digest] = set()
    for name in selected:
        stage = project.stages[name]
        deps: dict[str, Digest | None] = {}
        for d in stage.deps:
            if d.kind is DepKind.DATA:
                deps[d.address] = pins.get(d.address.partition(".")[2])
            else:
                content = contents.get(d.path)
                deps[d.address] = content.digest if content is not None else None
        if all(v is not None for v in deps.values()):
            key = stage_key(stage, {a: v for a, v in deps.items() if v is not None}, environment)
            run = ws.runs.get(key)
            if run is not None:
                runs[key] = run
                wanted.update(c.digest for c in run.outs.values())
        record = state.stages.get(name)
        if record is not None:
            wanted.update(c.digest for c in record.outs.values())
    cached = frozenset(d for d in wanted if ws.store.has(d))
    return Observed(
        lock=lock,
        contents=contents,
        environment=environment,
        runs=runs,
        cached=cached,
        commit=commit,
        data=data,
    )
