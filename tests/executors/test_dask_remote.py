"""``--executor 'dask://HOST:PORT?transfer=remote'``: workers that share nothing with the
project but its remote, against a real Dask scheduler and workers on 127.0.0.1.

The workers start in a directory of their own with ``CANON_WORKER_DIR`` there;
every stage writes its working directory to a side file, so a stage that ran
in the project root (the shared-directory mode) fails the test.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from canon.apply.remotestage import STALE_AFTER, _prune, run_on_worker
from canon.apply.transfer import Transfer
from canon.digest import hash_bytes
from canon.events import discard
from canon.executors.dask import DaskPool, ExecutorURLError, parse_executor
from canon.stores.lockfile import read_lock
from canon.stores.objects import ObjectStore
from canon.stores.references import Root
from canon.stores.remotes.catalog import Catalog
from canon.stores.remotes.local import LocalRemote
from tests.e2e.conftest import Workspace, ws  # noqa: F401  (the fixture)
from tests.executors.test_dask import dask_cluster

PREP = textwrap.dedent("""
    import os, pathlib
    with open(os.environ["CWD_LOG"], "a") as log:
        log.write(f"prep {os.getcwd()}\\n")
    data = pathlib.Path("input.txt").read_text()
    for top in ("assets", os.environ["RAW"]):
        for f in sorted(p for p in pathlib.Path(top).rglob("*") if p.is_file()):
            data += f.read_text()
    pathlib.Path("build/prep.txt").write_text(data)
""")

TRAIN = textwrap.dedent("""
    import os, pathlib, time
    with open(os.environ["CWD_LOG"], "a") as log:
        log.write(f"train {os.getcwd()}\\n")
    time.sleep(float(os.environ["SLEEP"]))
    text = pathlib.Path("build/prep.txt").read_text()
    model = pathlib.Path("build/model")
    (model / "sub").mkdir(parents=True, exist_ok=True)
    (model / "weights.txt").write_text(text.upper())
    (model / "sub" / "meta.txt").write_text(f"{len(text)} {os.environ['SALT']}")
""")


@pytest.fixture(scope="module")
def far_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Workers started in a directory of their own, ``CANON_WORKER_DIR`` under it."""
    home = tmp_path_factory.mktemp("workers")
    worker_dir = home / "canon"
    with dask_cluster(home, cwd=home, env={"CANON_WORKER_DIR": str(worker_dir)}) as url:
        yield url, worker_dir


def _project(ws: Workspace, cwd_log: Path, remote: Path, sleep: str = "0") -> None:  # noqa: F811
    ws.write(
        {
            "prep.py": PREP,
            "train.py": TRAIN,
            "assets/a.txt": "asset-a\n",
            "assets/deep/b.txt": "asset-b\n",
            "raw/r.txt": "raw-r\n",
        }
    )
    env = {"CWD_LOG": str(cwd_log)}
    ws.declare(
        {
            "prep": {
                "cmd": [sys.executable, "prep.py"],
                "deps": ["prep.py", "input.txt", "assets", "data.raw"],
                "outs": ["build/prep.txt"],
                "env": {**env, "RAW": "${data.raw}"},
            },
            "train": {
                "cmd": [sys.executable, "train.py"],
                "deps": ["train.py", "build/prep.txt"],
                "outs": ["build/model"],
                "env": {**env, "SLEEP": sleep, "SALT": sleep},
            },
        },
        data={"raw": {"source": "raw"}},
        remotes={"store": {"url": str(remote)}},
        default_remote="store",
    )


def _cwds(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [(ln.split(" ", 1)[0], ln.split(" ", 1)[1]) for ln in log.read_text().splitlines()]


def _expect_model(ws: Workspace, salt: str) -> None:  # noqa: F811
    prep = "in\nasset-a\nasset-b\nraw-r\n"
    assert ws.read("build/prep.txt") == prep
    assert ws.read("build/model/weights.txt") == prep.upper()
    assert ws.read("build/model/sub/meta.txt") == f"{len(prep)} {salt}"


def test_apply_through_the_remote(
    ws: Workspace,  # noqa: F811
    far_cluster: tuple[str, Path],
    tmp_path: Path,
) -> None:
    url, worker_dir = far_cluster
    remote, cwd_log = tmp_path / "remote", tmp_path / "cwd.log"
    _project(ws, cwd_log, remote)
    executor = f"{url}?transfer=remote"

    r = ws.canon("apply", "--executor", executor)
    assert r.returncode == 0, r.stdout + r.stderr
    _expect_model(ws, "0")
    ran = _cwds(cwd_log)
    assert sorted(name for name, _ in ran) == ["prep", "train"]
    for _, cwd in ran:  # in a scratch directory of the worker, never the project
        assert Path(cwd).is_relative_to(worker_dir / "tasks"), cwd
        assert not Path(cwd).is_relative_to(ws.root)
        assert not Path(cwd).exists()  # removed after the task
    assert list((worker_dir / "tasks").iterdir()) == []
    assert (worker_dir / "cache").is_dir()

    # the remote holds every output object (a directory: its manifest and its files)
    outs = read_lock(ws.root).state(None).stages
    model, prep = outs["train"].outs["build/model"], outs["prep"].outs["build/prep.txt"]
    catalog = Catalog.load(LocalRemote(remote), tmp_path / "record")
    files = [e.digest for e in ObjectStore(ws.root / ".canon" / "cache").manifest(model.digest)]
    assert len(files) == 2
    for d in [model.digest, prep.digest, *files]:
        assert catalog.has(d), d

    assert ws.canon("status").returncode == 0
    again = ws.canon("apply", "--executor", executor)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(_cwds(cwd_log)) == 2  # nothing ran

    # a worker SIGKILLed mid-stage: the task is retried, the workspace ends right
    _project(ws, cwd_log, remote, sleep="3")
    proc = ws.popen("apply", "--executor", executor)
    deadline = time.monotonic() + 60
    while sum(name == "train" for name, _ in _cwds(cwd_log)) < 2:  # it started: sleeping
        assert time.monotonic() < deadline and proc.poll() is None, "train never started"
        time.sleep(0.05)
    victim = _worker_running("train", deadline)
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    trains = [cwd for name, cwd in _cwds(cwd_log) if name == "train"]
    assert len(trains) == 3  # the first run, the killed attempt, the retry
    assert all(Path(cwd).is_relative_to(worker_dir / "tasks") for cwd in trains)
    _expect_model(ws, "3")
    assert ws.canon("status").returncode == 0


def test_a_failed_stage_pushes_and_restores_nothing(
    ws: Workspace,  # noqa: F811
    far_cluster: tuple[str, Path],
    tmp_path: Path,
) -> None:
    url, _ = far_cluster
    remote = tmp_path / "remote"
    written = b"half-written by a stage that failed\n"
    fail = f"open('out.txt','wb').write({written!r}); print('giving up'); raise SystemExit(3)"
    ws.declare(
        {"s": {"cmd": [sys.executable, "-c", fail], "deps": ["input.txt"], "outs": ["out.txt"]}},
        remotes={"store": {"url": str(remote)}},
        default_remote="store",
    )
    r = ws.canon("apply", "--executor", f"{url}?transfer=remote")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "exit code 3" in r.stdout + r.stderr and "giving up" in r.stdout + r.stderr
    assert not (ws.root / "out.txt").exists()
    catalog = Catalog.load(LocalRemote(remote), tmp_path / "record")
    assert catalog.has(hash_bytes(b"in\n"))  # the dep went up
    assert not catalog.has(hash_bytes(written))  # the failed run's output did not


def test_abandoned_scratch_directories_are_pruned(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    old, live, lockless, fresh = (tasks / n for n in ("old", "live", "lockless", "fresh"))
    for d in (old, live, lockless, fresh):
        (d / "work").mkdir(parents=True)
    for d in (old, live, fresh):
        (d / "lock").touch()
    hour_ago = time.time() - STALE_AFTER - 60
    for d in (old, live, lockless):
        os.utime(d, (hour_ago, hour_ago))
    held = os.open(live / "lock", os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # a task still running
        _prune(tasks)
    finally:
        os.close(held)
    assert sorted(p.name for p in tasks.iterdir()) == ["fresh", "live"]


def test_the_worker_cache_keeps_deps_across_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run_on_worker`` (the task, called here without Dask): a dep fetched by one
    task is not fetched again by the next, even once the remote lost it."""
    monkeypatch.setenv("CANON_WORKER_DIR", str(tmp_path / "worker"))
    remote_dir = tmp_path / "remote"
    remote_dir.mkdir()
    client = ObjectStore(tmp_path / "client-cache")
    dep = client.add_bytes(b"dep bytes\n")
    transfer = Transfer(client, LocalRemote(remote_dir), tmp_path / "record", discard)
    transfer.push([Root("dep", dep, 10, False, "in/dep.txt")])
    copy = "import shutil, sys; shutil.copy('in/dep.txt', sys.argv[1])"

    def task(out: str) -> dict[str, object]:
        return run_on_worker(
            {
                "stage": "s",
                "argv": [sys.executable, "-c", copy, out],
                "env": {},
                "deps": {"in/dep.txt": [dep, False, 10, 0o644]},
                "outs": [out],
                "remote": {
                    "name": "r",
                    "url": str(remote_dir),
                    "endpoint_url": None,
                    "region": None,
                    "jobs": None,
                },
            }
        )

    first = task("a.txt")
    assert first["exit_code"] == 0 and first["error"] is None, first
    assert first["outs"] == {"a.txt": [dep, False, 10, 0]}
    shutil.rmtree(remote_dir)
    remote_dir.mkdir()  # the remote lost everything: the dep must come from the worker cache
    second = task("b.txt")
    assert second["exit_code"] == 0 and second["error"] is None, second
    assert Catalog.load(LocalRemote(remote_dir), tmp_path / "record2").has(dep)  # pushed again
    assert list((tmp_path / "worker" / "tasks").iterdir()) == []


def _worker_running(stage: str, deadline: float) -> int:
    """The pid of the Dask worker process whose task runs ``stage``'s command
    (command -> canon's stage helper -> worker)."""
    while time.monotonic() < deadline:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if b"train.py" in cmd and f"CANON_STAGE={stage}".encode() in environ:
                helper = _parent(int(pid))
                helper_cmd = Path(f"/proc/{helper}/cmdline").read_bytes()
                assert b"canon.apply.remotestage" in helper_cmd, helper_cmd
                return _parent(helper)
        time.sleep(0.05)
    raise AssertionError(f"{stage} never started on a worker")


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def test_executor_url_errors(ws: Workspace, tmp_path: Path) -> None:  # noqa: F811
    _project(ws, tmp_path / "cwd.log", tmp_path / "remote")
    bogus = ws.canon("apply", "--executor", "dask://127.0.0.1:1?transfer=bogus")
    assert bogus.returncode == 2, bogus.stdout + bogus.stderr
    assert "transfer='bogus' is not one of shared, remote" in bogus.stderr
    assert "Traceback" not in bogus.stderr
    unknown = ws.canon("apply", "--executor", "dask://127.0.0.1:1?copy=remote")
    assert unknown.returncode == 2 and "unknown option 'copy'" in unknown.stderr

    ws.declare({"s": {"cmd": [sys.executable, "-c", "pass"], "outs": []}})
    none = ws.canon("apply", "--executor", "dask://127.0.0.1:1?transfer=remote")
    assert none.returncode == 2, none.stdout + none.stderr
    assert "transfer=remote moves stage files through the project's remote" in none.stderr
    assert "default_remote:" in none.stderr and "remotes:" in none.stderr
    assert not (ws.root / "ran.log").exists()


@pytest.mark.parametrize(
    ("url", "address", "transfer"),
    [
        ("dask://h:1", "tcp://h:1", "shared"),
        ("tcp://h:1/", "tcp://h:1", "shared"),
        ("dask://h:1?transfer=remote", "tcp://h:1", "remote"),
        ("dask://h:1?transfer=shared", "tcp://h:1", "shared"),
    ],
)
def test_parse_executor(url: str, address: str, transfer: str) -> None:
    target = parse_executor(url)
    assert (target.address, target.transfer) == (address, transfer)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h:1", "is not a Dask scheduler address"),
        ("dask://h:1?transfer=", "is not one of shared, remote"),
        ("dask://h:1?transfer=remote&transfer=remote", "given twice"),
        ("dask://h:1?jobs=2", "unknown option 'jobs'"),
        ("dask://h:1?transfer", "is not one of"),
    ],
)
def test_parse_executor_refuses(url: str, problem: str) -> None:
    with pytest.raises(ExecutorURLError, match=problem) as err:
        parse_executor(url)
    assert err.value.exit_code == 2 and err.value.hint


def test_experiments_refuse_transfer_remote() -> None:
    with pytest.raises(ExecutorURLError, match="`canon apply` stages only"):
        DaskPool("dask://127.0.0.1:1?transfer=remote")
