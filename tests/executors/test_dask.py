"""The Dask executor against a real Dask scheduler and workers on 127.0.0.1.

The ``Runner`` conformance suite runs against both the local runner and the
Dask runner; then ``canon apply --executor`` and ``canon exp queue start
--executor`` through the CLI, and a worker SIGKILLed mid-stage.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from canon.declare.project import StageSpec
from canon.executors.dask import DaskRunner, ExecutorError, connect, scheduler_address
from canon.executors.local import LocalRunner, Runner
from tests.e2e.conftest import Workspace, step, ws  # noqa: F401  (the fixture)

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def dask_cluster(
    logs: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    """A scheduler and two single-threaded worker processes (under one nanny),
    started in ``cwd`` with ``env`` added; stopped by process group on exit."""
    port = _free_port()
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False", **(env or {})}
    procs = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                "127.0.0.1:0",
                "--no-show",
            ],
            stdout=open(logs / "scheduler.log", "wb"),  # noqa: SIM115 (the process owns it)
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    ]
    url = f"dask://127.0.0.1:{port}"
    procs.append(
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "worker",
                f"tcp://127.0.0.1:{port}",
                "--host",
                "127.0.0.1",
                "--nworkers",
                "2",
                "--nthreads",
                "1",
                "--dashboard-address",
                "127.0.0.1:0",
                "--death-timeout",
                "60",
            ],
            stdout=open(logs / "worker.log", "wb"),  # noqa: SIM115 (the process owns it)
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    )
    try:
        client = connect(url, timeout=30)
        client.wait_for_workers(2, timeout=60)
        client.close()
        yield url
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and two single-threaded worker processes (under one nanny each)."""
    with dask_cluster(tmp_path_factory.mktemp("dask")) as url:
        yield url


def _stage(name: str, *argv: str, env: dict[str, str] | None = None) -> StageSpec:
    return StageSpec(
        name=name,
        argv=tuple(argv),
        env=tuple((env or {}).items()),
        deps=(),
        params=(),
        param_values=(),
        outs=(),
        metrics=(),
    )


@pytest.fixture(params=["local", "dask"])
def runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runner]:
    if request.param == "local":
        yield LocalRunner(tmp_path / "run", tmp_path / "logs")
        return
    url = request.getfixturevalue("cluster")
    r = DaskRunner(url, tmp_path / "logs")
    yield r
    r.close()


def test_runner_conformance(runner: Runner, tmp_path: Path) -> None:
    lines: list[str] = []
    ok = runner.run(
        _stage(
            "ok",
            sys.executable,
            "-c",
            "import os; print('hi', os.environ['X']); open('f','w').write('1')",
            env={"X": "x; rm -rf /"},
        ),
        tmp_path,
        lines.append,
    )
    assert ok.exit_code == 0 and lines == ["hi x; rm -rf /"]
    assert (tmp_path / "f").read_text() == "1"  # ran in the project directory
    assert ok.log.read_text() == "hi x; rm -rf /\n"
    bad = runner.run(
        _stage("bad", sys.executable, "-c", "import sys; print('no'); sys.exit(3)"),
        tmp_path,
        lambda _: None,
    )
    assert bad.exit_code == 3 and bad.tail == ("no",)
    missing = runner.run(_stage("missing", "/nonexistent/prog"), tmp_path, lambda _: None)
    assert missing.exit_code == 127 and "cannot start" in missing.tail[0]


def test_unreachable_scheduler_is_a_clear_error() -> None:
    with pytest.raises(ExecutorError, match=r"did not answer") as err:
        connect(f"dask://127.0.0.1:{_free_port()}", timeout=1)
    assert err.value.hint and "dask scheduler" in err.value.hint
    with pytest.raises(ExecutorError, match="is not a Dask scheduler address"):
        scheduler_address("http://x")


def test_apply_on_dask_and_a_worker_killed_mid_stage(ws: Workspace, cluster: str) -> None:  # noqa: F811
    ws.declare(
        {
            "prep": step("build/prep.txt", "input.txt"),
            "slow": step("build/slow.txt", "build/prep.txt", env={"STEP_SLEEP": "3"}),
        }
    )
    proc = ws.popen("apply", "--executor", cluster)
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:  # the worker running "slow"
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if b"step.py" in cmd and b"CANON_STAGE=slow" in environ:
                stat = Path(f"/proc/{pid}/stat").read_text()
                victim = int(stat.rpartition(")")[2].split()[1])  # its parent: the worker
                break
        time.sleep(0.05)
    assert victim is not None, "the slow stage never started on a worker"
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    log = (ws.root / "ran.log").read_text().splitlines()
    starts = [line for line in log if line.startswith("slow start")]
    ends = [line for line in log if line.startswith("slow end")]
    assert len(starts) == 2 and len(ends) == 1  # killed once, retried on a worker, done once
    assert ws.read("build/slow.txt") == "in\n"
    assert ws.canon("status").returncode == 0
    bad = ws.canon("apply", "-f", "--executor", f"dask://127.0.0.1:{_free_port()}")
    assert bad.returncode == 4 and "did not answer" in bad.stderr and "Traceback" not in bad.stderr


def test_queue_on_dask(ws: Workspace, cluster: str) -> None:  # noqa: F811
    ws.declare(
        {"train": step("build/model.txt", "input.txt", params=["a"], env={"SALT": "${params.a}"})},
        params="params.yaml",
    )
    subprocess.run(["git", "add", "-A"], cwd=ws.root, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "i"],
        cwd=ws.root,
        check=True,
    )
    q = ws.canon("exp", "run", "-S", "a=choice(1,2,3)", "--queue", "--name", "d")
    assert q.returncode == 0, q.stderr
    r = ws.canon("exp", "queue", "start", "--executor", cluster)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(" done ") == 3
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/canon/exps/"],
        cwd=ws.root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert refs == ["refs/canon/exps/d-1", "refs/canon/exps/d-2", "refs/canon/exps/d-3"]
