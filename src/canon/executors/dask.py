"""Stages and experiments on a Dask distributed cluster (``--executor dask://HOST:PORT``).

``DaskRunner`` is a ``Runner`` (executors/local.py): each stage's command runs
as a child process *on a Dask worker*, in the project directory, and its
output comes back as the task's result; the applier then hashes and stores
the outputs exactly as for a local run. ``DaskPool`` runs whole queued
experiments on the workers (``apply/expqueue.py``).

Where the bytes go: the workers here share the machine (and so the project
directory and ``.canon/cache``) with the client. On several machines the
project directory must be a shared filesystem, or each worker must work in a
clone and exchange objects through the project's remote (``canon push/pull``);
the second is not implemented yet.

Failures: a task is submitted with ``retries`` and ``pure=False``. When a
worker dies mid-stage, the scheduler reschedules the task on another worker
(Dask's own ``allowed-failures``), and the applier only stores outputs after a
successful exit, so a killed stage leaves nothing half-stored: outputs are
hashed and renamed into the cache only after the retried run finished.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from canon.declare.project import StageSpec
from canon.errors import CanonError
from canon.executors.local import StageRun

RETRIES = 2


class ExecutorError(CanonError):
    code = "executor.unreachable"
    exit_code = 4


def scheduler_address(url: str) -> str:
    """``dask://host:port`` (or ``tcp://host:port``) -> the scheduler's ``tcp://`` address."""
    for scheme in ("dask://", "tcp://"):
        if url.startswith(scheme):
            rest = url[len(scheme) :].rstrip("/")
            host, _, port = rest.rpartition(":")
            if host and port.isdigit():
                return f"tcp://{rest}"
    raise ExecutorError(
        f"{url!r} is not a Dask scheduler address", hint="write --executor dask://HOST:PORT"
    )


def connect(url: str, timeout: float = 10.0) -> Any:
    address = scheduler_address(url)
    try:
        from distributed import Client
    except ImportError as exc:
        raise ExecutorError(
            "the Dask executor needs dask[distributed]",
            hint="pip install 'canon[dask]'",
        ) from exc
    try:
        return Client(address, timeout=timeout, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise ExecutorError(
            f"the Dask scheduler at {address} did not answer ({type(exc).__name__})",
            hint="start one with `dask scheduler --host HOST --port PORT`, or check the address",
        ) from exc


def run_command(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> tuple[int, bytes, float]:
    """What a worker runs for one stage (a plain function, picklable)."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        return 127, f"cannot start {argv[0]!r}: {exc.strerror or exc}\n".encode(), 0.0
    return proc.returncode, proc.stdout, time.monotonic() - started


def _die_with_parent() -> None:
    """In the child: SIGKILL it when the worker that started it dies (Linux
    PR_SET_PDEATHSIG), so a dead worker leaves no stage writing behind the
    retry's back."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class DaskRunner:
    """A ``Runner`` that runs each stage on a worker of a Dask cluster."""

    def __init__(self, url: str, log_dir: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self.client = connect(url)
        self.log_dir = log_dir
        self.extra_env = dict(extra_env or {})
        self._futures: list[Any] = []

    def run(self, stage: StageSpec, root: Path, on_line: Callable[[str], None]) -> StageRun:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{stage.name}.log"
        env = {**self.extra_env, **dict(stage.env)}
        future = self.client.submit(
            run_command,
            tuple(stage.argv),
            str(root),
            env,
            key=f"canon-stage-{stage.name}-{os.urandom(4).hex()}",
            pure=False,
            retries=RETRIES,
        )
        self._futures.append(future)
        try:
            code, output, duration = future.result()
        except Exception as exc:  # KilledWorker, CancelledError, scheduler lost
            message = f"the Dask task failed: {type(exc).__name__}: {exc}"
            log_path.write_text(message + "\n")
            return StageRun(1, 0.0, log_path, (message,))
        log_path.write_bytes(output)
        lines = output.decode(errors="replace").splitlines()
        for line in lines:
            on_line(line)
        return StageRun(int(code), float(duration), log_path, tuple(lines[-20:]))

    def stop_all(self) -> None:
        for future in self._futures:
            future.cancel()

    def close(self) -> None:
        self.client.close()


class DaskPool:
    """Queued experiments on a Dask cluster: one task per experiment."""

    def __init__(self, url: str, workers_hint: int = 1) -> None:
        self.client = connect(url)
        self.workers_hint = workers_hint

    def map(
        self,
        fn: Callable[[str, dict[str, Any]], dict[str, Any]],
        root: str,
        jobs: Sequence[tuple[str, dict[str, Any]]],
    ) -> Iterator[tuple[str, dict[str, Any] | str]]:
        """``fn(root, job)`` for every job on the cluster, yielded as they finish
        (a result dict, or the error's message)."""
        from distributed import as_completed

        futures = {
            self.client.submit(
                fn, root, raw, key=f"canon-exp-{name}", pure=False, retries=RETRIES
            ): name
            for name, raw in jobs
        }
        for future in as_completed(list(futures), loop=self.client.loop):  # type: ignore[no-untyped-call]
            try:
                yield futures[future], future.result()
            except CanonError as exc:
                yield futures[future], exc.message
            except Exception as exc:
                yield futures[future], f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        self.client.close()
