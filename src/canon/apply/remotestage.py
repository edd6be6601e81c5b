"""Stages on Dask workers that share nothing with the client but the project's remote.

``canon apply --executor 'dask://HOST:PORT?transfer=remote'``: the ``DaskRunner``
(executors/dask.py) is handed a ``RemoteTransport``, and the applier sees an
ordinary run. For one stage:

1. client (``RemoteTransport.send``): each dep, as it is in the workspace (a
   dataset's at its mount, ``.canon/data/NAME``), is stored in the local cache
   (a directory as its manifest) and pushed to the remote;
2. the task (``run_on_worker``) gets a plain payload: argv, env, the deps as
   ``{path: [digest, is_dir, size, mode]}``, the declared outputs and the remote's
   spec (URL, endpoint, region: never credentials; the worker uses its own);
3. on the worker: a scratch directory per task under ``$CANON_WORKER_DIR`` (else
   the system temp dir), a worker-local cache shared by its tasks (a dep already
   there is not downloaded again); the deps are fetched (verified) and restored
   at their paths, the command runs there (its process dies with the worker:
   ``PR_SET_PDEATHSIG``), and after a successful exit each declared output is
   stored in the worker cache and pushed. A failed command pushes nothing. The
   scratch directory is always removed;
4. client (``RemoteTransport.receive``): the outputs are fetched (verified) and
   restored into the workspace (built aside, renamed in), then the applier hashes
   and records them as for a local run.

The canon side of step 3 runs in a child process (``python -m
canon.apply.remotestage TASKDIR``): Dask's worker processes are daemonic by
default and may not start the process pools that hash and pack big trees.

A worker killed mid-stage: the helper and the command die with it, the task is
retried elsewhere (``RETRIES``), and nothing reaches the workspace until a run
succeeded; the dead attempt's scratch directory is removed by a later task
(``_prune``: older than an hour and no live task holding its lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from canon.apply.sync import choose_remote, transfer_to
from canon.apply.transfer import Transfer
from canon.declare.project import DATA_MOUNT, DepKind, Project, RemoteSpec, StageSpec
from canon.digest import Digest
from canon.errors import CanonError, PathError, RemoteNotFoundError
from canon.events import discard
from canon.executors.dask import DaskRunner, parse_executor, run_command
from canon.observe.content import ContentReader
from canon.observe.workspace import Workspace
from canon.stores.atomic import atomic_write
from canon.stores.manifest import MODE_EXEC, MODE_FILE
from canon.stores.objects import ObjectStore
from canon.stores.records import Content
from canon.stores.references import Root
from canon.stores.remotes import DEFAULT_JOBS, LazyRemote
from canon.stores.remotes.catalog import record_dir_for
from canon.stores.statcache import StatCache
from canon.urls import scheme_of

WORKER_DIR_ENV = "CANON_WORKER_DIR"
STALE_AFTER = 3600.0  # seconds: an abandoned task directory older than this is removed


def dask_runner(url: str, ws: Workspace, project: Project, log_dir: Path) -> DaskRunner:
    """The ``DaskRunner`` for ``--executor url``: with a ``RemoteTransport`` when the
    URL says ``transfer=remote`` (checked before anything runs)."""
    if parse_executor(url).transfer != "remote":
        return DaskRunner(url, log_dir)
    return DaskRunner(url, log_dir, transport=RemoteTransport(ws, project))


def remote_for_workers(project: Project, root: Path) -> RemoteSpec:
    """The project's remote as workers reach it: a directory made absolute."""
    try:
        spec = choose_remote(project, None)
    except RemoteNotFoundError as exc:
        raise RemoteNotFoundError(
            f"--executor …?transfer=remote moves stage files through the project's remote: "
            f"{exc.message}",
            hint=(
                "choose one with default_remote: NAME (or the profile's remote: NAME)"
                if project.remotes
                else "declare one under remotes: and choose it with default_remote: (e.g.  "
                "remotes: {store: {url: s3://bucket/prefix}}  default_remote: store)"
            )
            + "; workers reach it with their own credentials",
        ) from exc
    scheme = scheme_of(spec.url)
    if scheme is None or scheme == "file":
        path = spec.url[len("file://") :] if scheme == "file" else spec.url
        url = str((root / Path(path).expanduser()).resolve())
        spec = RemoteSpec(spec.name, url, spec.endpoint_url, spec.region, spec.jobs)
    return spec


class RemoteTransport:
    """The client side: deps to the remote before a task, outputs back after it.
    ``DaskRunner.run`` is called from the applier's threads; transfers are serialised."""

    def __init__(self, ws: Workspace, project: Project) -> None:
        self.ws = ws
        self.spec = remote_for_workers(project, ws.root)
        self.transfer = transfer_to(ws.root, self.spec, ws.store, None, discard)
        self._guard = threading.Lock()
        self._mounts: ContentReader | None = None  # datasets' mounts, hashed once per apply

    def worker(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return run_on_worker

    def send(self, stage: StageSpec, root: Path) -> dict[str, Any]:
        deps: dict[str, list[Any]] = {}
        roots: list[Root] = []
        with self._guard:
            for dep in stage.deps:
                content, mode = self._store(stage, dep.kind, dep.address, dep.path)
                deps[dep.path] = [content.digest, content.is_dir, content.size, mode]
                roots.append(
                    Root(dep.address, content.digest, content.size, content.is_dir, dep.path)
                )
            if roots:
                self.transfer.push(roots)
        s = self.spec
        remote = {
            "name": s.name,
            "url": s.url,
            "endpoint_url": s.endpoint_url,
            "region": s.region,
            "jobs": s.jobs,
        }
        return {"deps": deps, "remote": remote}

    def _store(
        self, stage: StageSpec, kind: DepKind, address: str, path: str
    ) -> tuple[Content, int]:
        """Store the dep at ``path`` in the local cache; its content and file mode."""
        if kind is DepKind.DATA and path.startswith(DATA_MOUNT + "/"):
            top = self.ws.root / DATA_MOUNT
            if self._mounts is None:
                self._mounts = ContentReader(top, StatCache(None))
            rel = path[len(DATA_MOUNT) + 1 :]
            snap = self._mounts.snapshot(rel)
        else:
            top, rel = self.ws.root, path
            snap = self.ws.snapshot(path)
        if snap is None:
            raise PathError(
                f'stage "{stage.name}": its dep "{address}" does not exist',
                hint="an upstream stage did not produce it, or the file was removed",
            )
        content, manifest = snap
        if manifest is not None:
            self.ws.store.add_tree(top / rel, manifest)
            return content, 0
        self.ws.store.add_file(top / rel, content.digest)
        executable = os.stat(top / rel).st_mode & stat.S_IXUSR
        return content, MODE_EXEC if executable else MODE_FILE

    def receive(self, outs: Mapping[str, Any], root: Path) -> None:
        roots = [
            Root(f"out:{path}", Digest(d), int(size), bool(is_dir), path)
            for path, (d, is_dir, size, _mode) in outs.items()
        ]
        with self._guard:
            self.transfer.fetch(roots)
            for r in roots:
                assert r.path is not None
                self.ws.store.restore(r.digest, root / r.path, is_dir=r.is_dir)


# -- on the worker --------------------------------------------------------------------


def worker_base() -> Path:
    """Where a worker keeps its cache and its tasks' scratch directories."""
    configured = os.environ.get(WORKER_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(tempfile.gettempdir()) / f"canon-worker-{os.getuid()}"


def run_on_worker(payload: dict[str, Any]) -> dict[str, Any]:
    """The Dask task: one stage in a scratch directory of this worker. Runs the canon
    side in a child (``main``); raises (and Dask retries) if that child died."""
    tasks = worker_base() / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    _prune(tasks)
    task = Path(tempfile.mkdtemp(prefix=f"{payload['stage']}-", dir=tasks))
    lock = os.open(task / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held while this task lives: _prune skips it
        (task / "payload.json").write_text(json.dumps(payload))
        helper = [sys.executable, "-m", "canon.apply.remotestage", str(task)]
        code, output, _ = run_command(helper, str(task), {})
        try:
            result: dict[str, Any] = json.loads((task / "result.json").read_bytes())
        except (OSError, ValueError):
            tail = output.decode(errors="replace")[-2000:]
            raise RuntimeError(
                f"canon's stage helper on {socket.gethostname()} exited {code} "
                f"without a result: {tail}"
            ) from None
        log = task / "output.log"
        result["output"] = log.read_bytes() if log.exists() else b""
        return result
    finally:
        os.close(lock)
        shutil.rmtree(task, ignore_errors=True)


def _prune(tasks: Path) -> None:
    """Remove the scratch directories of attempts that died (their worker killed):
    older than ``STALE_AFTER`` and not locked by a live task."""
    now = time.time()
    for entry in tasks.iterdir():
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime < STALE_AFTER:
                continue
            try:
                fd = os.open(entry / "lock", os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:  # died before it took its lock
                shutil.rmtree(entry, ignore_errors=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # a live task
            try:
                shutil.rmtree(entry, ignore_errors=True)
            finally:
                os.close(fd)


def main(argv: list[str]) -> int:
    """``python -m canon.apply.remotestage TASKDIR``: the canon side of one task.
    Writes ``result.json`` (exit code, duration, outputs, or an error message)."""
    task = Path(argv[1])
    payload = json.loads((task / "payload.json").read_bytes())
    work = task / "work"
    work.mkdir()
    result: dict[str, Any] = {"exit_code": 1, "duration": 0.0, "outs": {}, "error": None}
    try:
        result.update(_host(payload, task, work))
    except CanonError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        result["error"] = f"on worker {socket.gethostname()}: {exc.message}{hint}"
    atomic_write(task / "result.json", json.dumps(result).encode())
    return 0


def _host(payload: dict[str, Any], task: Path, work: Path) -> dict[str, Any]:
    base = worker_base()
    store = ObjectStore(base / "cache")
    spec = RemoteSpec(**payload["remote"])
    jobs = spec.jobs or DEFAULT_JOBS
    remote = LazyRemote(spec, work, jobs=jobs)
    transfer = Transfer(store, remote, record_dir_for(base, remote), discard, jobs=jobs)
    deps = sorted(payload["deps"].items())  # a directory before a file inside it
    roots = [Root(f"dep:{p}", Digest(d), int(n), bool(is_dir), p) for p, (d, is_dir, n, _) in deps]
    transfer.fetch(roots)
    for path, (d, is_dir, _, mode) in deps:
        store.restore(Digest(d), work / path, is_dir=bool(is_dir), mode=int(mode) or MODE_FILE)
    for out in payload["outs"]:
        (work / out).parent.mkdir(parents=True, exist_ok=True)
    code, output, duration = run_command(payload["argv"], str(work), payload["env"])
    (task / "output.log").write_bytes(output)
    if code != 0:
        return {"exit_code": code, "duration": duration}  # a failed command pushes nothing
    reader = ContentReader(work, StatCache(None))
    outs: dict[str, list[Any]] = {}
    for out in payload["outs"]:
        snap = reader.snapshot(out)
        if snap is None:
            continue  # the applier says which declared output was not written
        content, manifest = snap
        if manifest is not None:
            store.add_tree(work / out, manifest)
        else:
            store.add_file(work / out, content.digest)
        outs[out] = [content.digest, content.is_dir, content.size, 0]
    if outs:
        transfer.push(
            [Root(f"out:{p}", Digest(d), n, is_dir, p) for p, (d, is_dir, n, _) in outs.items()]
        )
    return {"exit_code": 0, "duration": duration, "outs": outs}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
