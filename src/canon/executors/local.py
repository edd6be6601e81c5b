"""The local stage runner: one child process per stage, no shell unless declared.

Each child runs in its own session (process group) so an interrupt stops the
whole tree a command started. Its pid and start time are recorded under
``.canon/run/pids/`` while it runs: if canon itself is SIGKILLed the children
would live on as orphans, so the next ``canon apply`` that takes the
workspace lock over reaps exactly those processes (start time checked, so a
recycled pid is never hit).

Numeric libraries size their thread pools to the machine (OpenMP, OpenBLAS, MKL,
numexpr): right for one stage alone, oversubscribed when N experiments run at
once (the queue's workers, a back-test's). While ``sharing_cores(N)`` is in
effect, each stage started here gets ``OMP_NUM_THREADS`` and its siblings set
to ``max(1, cores // N)``, unless the user set them in the environment (the
stage's own ``env:`` in canon.yaml wins over both).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from canon.declare.project import StageSpec


@dataclass(frozen=True)
class StageRun:
    exit_code: int
    duration: float
    log: Path
    tail: tuple[str, ...] = ()  # the last lines of output, for error messages


class Runner(Protocol):
    """Runs one stage's command to completion. Implementations: LocalRunner
    here; DaskRunner in executors/dask.py (same conformance tests, tests/executors/
    test_dask.py). ``on_line`` receives output lines as they come."""

    def run(self, stage: StageSpec, root: Path, on_line: Callable[[str], None]) -> StageRun: ...

    def stop_all(self) -> None: ...


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return stat.rpartition(")")[2].split()[19]  # field 22: starttime in clock ticks
    except (OSError, IndexError):
        return None


def reap_orphans(state_dir: Path) -> list[int]:
    """Kill the process groups a dead canon left running; return their pids."""
    killed: list[int] = []
    pids = state_dir / "pids"
    if not pids.is_dir():
        return killed
    for entry in pids.iterdir():
        with contextlib.suppress(ValueError, OSError):
            pid = int(entry.name)
            if _start_time(pid) == entry.read_text().strip():
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
        with contextlib.suppress(OSError):
            entry.unlink()
    return killed


# the variables that size numeric libraries' thread pools
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def cores() -> int:
    """The cores this process may run on (its affinity, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_caps(parallel: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``THREAD_VARS`` for one of ``parallel`` experiments sharing the cores, leaving
    out those set in ``environ`` (the user's choice wins); none when ``parallel`` <= 1."""
    environ = os.environ if environ is None else environ
    if parallel <= 1:
        return {}
    threads = str(max(1, cores() // parallel))
    return {name: threads for name in THREAD_VARS if name not in environ}


class CoreShare:
    """How many experiments share the cores now (``sharing_cores``); the holder lowers
    it as they finish, so the last ones' stages get more threads."""

    def __init__(self, parallel: int) -> None:
        self.parallel = max(1, parallel)

    def update(self, parallel: int) -> None:
        self.parallel = max(1, parallel)


_SHARES: list[CoreShare] = []
_SHARES_GUARD = threading.Lock()


@contextlib.contextmanager
def sharing_cores(parallel: int) -> Iterator[CoreShare]:
    """While in effect, stages started by any ``LocalRunner`` of this process get
    ``thread_caps(share.parallel)``: ``parallel`` experiments run at once."""
    share = CoreShare(parallel)
    with _SHARES_GUARD:
        _SHARES.append(share)
    try:
        yield share
    finally:
        with _SHARES_GUARD:
            _SHARES.remove(share)


def _shared_caps() -> dict[str, str]:
    with _SHARES_GUARD:
        parallel = max((s.parallel for s in _SHARES), default=1)
    return thread_caps(parallel)


class LocalRunner:
    def __init__(self, state_dir: Path, log_dir: Path, extra_env: Mapping[str, str] | None = None):
        self.state_dir = state_dir
        self.log_dir = log_dir
        self.extra_env = dict(extra_env or {})
        self._live: dict[int, subprocess.Popen[bytes]] = {}
        self._guard = threading.Lock()
        self._stopping = False

    def run(self, stage: StageSpec, root: Path, on_line: Callable[[str], None]) -> StageRun:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        pid_dir = self.state_dir / "pids"
        pid_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{stage.name}.log"
        env = {**os.environ, **_shared_caps(), **self.extra_env, **dict(stage.env)}
        tail: list[str] = []
        started = time.monotonic()
        with open(log_path, "wb") as log:
            try:
                with self._guard:
                    if self._stopping:
                        return StageRun(130, 0.0, log_path, ("interrupted",))
                    proc = subprocess.Popen(
                        list(stage.argv),
                        cwd=root,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                    self._live[proc.pid] = proc
            except OSError as exc:
                message = f"cannot start {stage.argv[0]!r}: {exc.strerror or exc}"
                log.write(message.encode() + b"\n")
                return StageRun(127, time.monotonic() - started, log_path, (message,))
            marker = pid_dir / str(proc.pid)
            with contextlib.suppress(OSError):
                marker.write_text(_start_time(proc.pid) or "")
            try:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    log.write(raw)
                    line = raw.decode(errors="replace").rstrip("\r\n")
                    tail.append(line)
                    del tail[:-20]
                    on_line(line)
                code = proc.wait()
            finally:
                with self._guard:
                    self._live.pop(proc.pid, None)
                with contextlib.suppress(OSError):
                    marker.unlink()
        return StageRun(code, time.monotonic() - started, log_path, tuple(tail))

    def stop_all(self) -> None:
        """Terminate every running stage's process group (on interrupt)."""
        with self._guard:
            self._stopping = True
            procs = list(self._live.values())
        for proc in procs:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
