"""Stages and experiments on a Dask distributed cluster (``--executor dask://HOST:PORT``).

``DaskRunner`` is a ``Runner`` (executors/local.py): each stage's command runs
as a child process *on a Dask worker*, in the project directory, and its
output comes back as the task's result; the applier then hashes and stores
the outputs exactly as for a local run. ``DaskPool`` runs whole queued
experiments on the workers (``apply/expqueue.py``).

Where the bytes go, chosen in the URL:

- ``dask://HOST:PORT`` (``transfer=shared``, the default): the command runs in
  the project directory, so the workers must see it (the same machine, or a
  shared filesystem);
- ``dask://HOST:PORT?transfer=remote`` (``canon apply`` stages only): the
  workers share nothing with the client but the project's remote. The runner
  is handed a ``StageTransport`` (apply/remotestage.py): it pushes the
  stage's deps to the remote, the task runs the command in a scratch
  directory on the worker (deps fetched from the remote into a worker-local
  cache, outputs pushed back), and the outputs are fetched and restored into
  the workspace before ``run`` returns, so the applier sees a local run.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl

from canon.declare.project import StageSpec
from canon.errors import CanonError
from canon.executors.local import StageRun

RETRIES = 2
TRANSFERS = ("shared", "remote")  # ?transfer=: how a stage's files reach a worker
_URL_HINT = "write --executor dask://HOST:PORT or dask://HOST:PORT?transfer=remote"


class ExecutorError(CanonError):
    code = "executor.unreachable"
    exit_code = 4


class ExecutorURLError(ExecutorError):
    """The ``--executor`` URL itself is wrong (the user's request: exit 2)."""

    code = "executor.url"
    exit_code = 2


@dataclass(frozen=True)
class DaskTarget:
    """A parsed ``--executor`` URL: the scheduler and how files travel."""

    address: str  # tcp://host:port
    transfer: str = "shared"  # one of TRANSFERS


def parse_executor(url: str) -> DaskTarget:
    """``dask://host:port[?transfer=shared|remote]`` (or ``tcp://``) -> ``DaskTarget``."""
    base, _, query = url.partition("?")
    address = None
    for scheme in ("dask://", "tcp://"):
        if base.startswith(scheme):
            rest = base[len(scheme) :].rstrip("/")
            host, _, port = rest.rpartition(":")
            if host and port.isdigit():
                address = f"tcp://{rest}"
    if address is None:
        raise ExecutorURLError(f"{url!r} is not a Dask scheduler address", hint=_URL_HINT)
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "transfer":
            raise ExecutorURLError(
                f"{url!r}: unknown option {key!r} (known: transfer)", hint=_URL_HINT
            )
        if key in options:
            raise ExecutorURLError(f"{url!r}: {key} is given twice", hint=_URL_HINT)
        if value not in TRANSFERS:
            raise ExecutorURLError(
                f"{url!r}: transfer={value!r} is not one of {', '.join(TRANSFERS)}",
                hint="transfer=shared: workers see the project directory (the default); "
                "transfer=remote: inputs and outputs travel through the project's remote",
            )
        options[key] = value
    if query and not options:
        raise ExecutorURLError(f"{url!r}: cannot read the options after '?'", hint=_URL_HINT)
    return DaskTarget(address, options.get("transfer", "shared"))


def scheduler_address(url: str) -> str:
    """``dask://host:port`` (or ``tcp://host:port``) -> the scheduler's ``tcp://`` address."""
    return parse_executor(url).address


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


class StageTransport(Protocol):
    """How a stage's files reach a worker that does not share the project directory
    and come back (``?transfer=remote``; implemented in apply/remotestage.py)."""

    def send(self, stage: StageSpec, root: Path) -> dict[str, Any]:
        """Make the stage's deps reachable from the workers; the payload entries the
        worker needs for them (plain, picklable, no secrets)."""
        ...

    def receive(self, outs: Mapping[str, Any], root: Path) -> None:
        """Put the outputs a worker produced (its result's ``outs``) into the workspace."""
        ...

    def worker(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """The module-level function the task runs on the worker."""
        ...


class DaskRunner:
    """A ``Runner`` that runs each stage on a worker of a Dask cluster; with a
    ``transport``, in a scratch directory there (``?transfer=remote``)."""

    def __init__(
        self,
        url: str,
        log_dir: Path,
        extra_env: Mapping[str, str] | None = None,
        *,
        transport: StageTransport | None = None,
    ) -> None:
        target = parse_executor(url)
        if target.transfer == "remote" and transport is None:
            raise ExecutorURLError(
                f"{url!r}: transfer=remote needs the project's remote here",
                hint="it applies to `canon apply` stages only",
            )
        self.client = connect(url)
        self.log_dir = log_dir
        self.extra_env = dict(extra_env or {})
        self.transport = transport
        self._futures: list[Any] = []

    def run(self, stage: StageSpec, root: Path, on_line: Callable[[str], None]) -> StageRun:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{stage.name}.log"
        env = {**self.extra_env, **dict(stage.env)}
        key = f"canon-stage-{stage.name}-{os.urandom(4).hex()}"
        if self.transport is not None:
            payload = {
                **self.transport.send(stage, root),
                "stage": stage.name,
                "argv": list(stage.argv),
                "env": env,
                "outs": list(stage.outs),
            }
            future = self.client.submit(
                self.transport.worker(), payload, key=key, pure=False, retries=RETRIES
            )
        else:
            future = self.client.submit(
                run_command, tuple(stage.argv), str(root), env, key=key, pure=False, retries=RETRIES
            )
        self._futures.append(future)
        try:
            result = future.result()
        except Exception as exc:  # KilledWorker, CancelledError, scheduler lost
            message = f"the Dask task failed: {type(exc).__name__}: {exc}"
            log_path.write_text(message + "\n")
            return StageRun(1, 0.0, log_path, (message,))
        if self.transport is not None:
            code, output, duration = result["exit_code"], result["output"], result["duration"]
            if result.get("error"):
                output += f"{result['error']}\n".encode()
        else:
            code, output, duration = result
        log_path.write_bytes(output)
        lines = output.decode(errors="replace").splitlines()
        for line in lines:
            on_line(line)
        if self.transport is not None and code == 0:
            outs = dict(result["outs"])
            stray = sorted(set(outs) - set(stage.outs))
            if stray:  # a worker names only the stage's declared outputs, never other paths
                raise ExecutorError(
                    f"stage {stage.name!r}: the worker returned undeclared outputs "
                    f"{', '.join(stray[:3])}",
                    hint="the worker runs another canon version, or is not a canon worker",
                )
            self.transport.receive(outs, root)  # nothing arrives before a success
        return StageRun(int(code), float(duration), log_path, tuple(lines[-20:]))

    def stop_all(self) -> None:
        for future in self._futures:
            future.cancel()

    def close(self) -> None:
        self.client.close()


class DaskPool:
    """Queued experiments on a Dask cluster: one task per experiment."""

    def __init__(self, url: str, workers_hint: int = 1) -> None:
        if parse_executor(url).transfer == "remote":
            raise ExecutorURLError(
                f"{url!r}: transfer=remote applies to `canon apply` stages only",
                hint="queued experiments need the repository on the workers (the same machine "
                "or a shared filesystem): drop ?transfer=remote for `canon exp queue start`",
            )
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
