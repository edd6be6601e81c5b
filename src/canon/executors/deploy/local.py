"""The local target: model servers as supervised processes behind a router on the port.

    .canon/deploy/<env>/state.json      router pid/port, the active version's backends
    .canon/deploy/<env>/backends.json   what the router sends traffic to (atomic rename)
    .canon/deploy/<env>/images/         extracted model images (rootfs + image config)
    .canon/deploy/<env>/logs/           each process's output

A rollout starts the new version's servers (``canon serve --image-root``) on free
loopback ports, waits for every ``/readyz``, switches the router, checks ``/readyz`` once
more through the switch, then drains and stops the old servers (SIGTERM: uvicorn finishes
in-flight requests). A version that never gets ready gets no traffic and is stopped; one
that fails right after the switch gets the traffic taken back. Either way the outcome is
``rolled_back`` with the reason, and the old version keeps serving.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from canon.declare.project import DeploymentSpec
from canon.errors import DeployError, DeployTargetError
from canon.events import Emit, Notice
from canon.executors.deploy.rootfs import extract_image
from canon.executors.deploy.target import Backend, Release, Rollout
from canon.observe.deployments import (
    SERVER_MARKER,
    Live,
    alive,
    get_json,
    home,
    observe_local,
    process_state,
)
from canon.stores.atomic import atomic_write
from canon.stores.oci.layout import ImageLayout

DRAIN_SECONDS = 1.0  # after the switch, before the old servers are told to stop
STOP_SECONDS = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def terminate(pids: list[int], timeout: float = STOP_SECONDS) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.05)
        if _running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap our own children
    return process_state(pid) not in (None, "Z")


@dataclass
class State:
    router: dict[str, Any] | None = None  # {"pid", "host", "port"}
    active: dict[str, Any] | None = None  # {"digest", "commit", "backends": [{"pid","port"}]}
    last_rollout: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def backends(self) -> list[Backend]:
        if not self.active:
            return []
        digest = str(self.active["digest"])
        return [
            Backend(int(b["pid"]), int(b["port"]), digest, b.get("container"))
            for b in self.active["backends"]
        ]


class LocalDeployer:
    """The embedded target. ``root`` is the project; images come from ``layout``.

    What is specific to processes is in five methods (``prepare``, ``start_server``,
    ``running``, ``serving``, ``stop_backends``) and ``observe``; the podman target
    overrides them and keeps the router and the rollout."""

    def __init__(self, root: Path, layout: ImageLayout) -> None:
        self.root = root
        self.layout = layout

    # -- files -------------------------------------------------------------

    def home(self, env: str) -> Path:
        return home(self.root, env)

    def load(self, env: str) -> State:
        try:
            raw = json.loads((self.home(env) / "state.json").read_bytes())
        except FileNotFoundError:
            return State()
        except (OSError, ValueError) as exc:
            raise DeployError(
                f"deployment {env}: its state file is damaged ({exc})",
                hint=f"stop its processes and remove {self.home(env)}",
            ) from exc
        return State(raw.get("router"), raw.get("active"), raw.get("last_rollout"))

    def save(self, env: str, state: State) -> None:
        doc = {"router": state.router, "active": state.active, "last_rollout": state.last_rollout}
        atomic_write(self.home(env) / "state.json", json.dumps(doc, indent=2).encode())

    def switch(self, env: str, backends: list[Backend]) -> None:
        urls = [f"http://127.0.0.1:{b.port}" for b in backends]
        atomic_write(self.home(env) / "backends.json", json.dumps({"backends": urls}).encode())

    # -- observe -------------------------------------------------------------

    def observe(self, spec: DeploymentSpec) -> Live:
        return observe_local(self.root, spec)

    # -- rollout -------------------------------------------------------------

    def rollout(self, spec: DeploymentSpec, release: Release, emit: Emit) -> Rollout:
        started = time.monotonic()
        state = self.load(spec.name)
        self._ensure_router(spec, state, emit)
        live = self.observe(spec)
        old = state.backends
        previous = state.active["digest"] if state.active else None
        if live.healthy and live.digest == release.digest:
            return self._finish(
                spec, state, release, previous, "unchanged", "already serving", started, old
            )
        prepared = self.prepare(spec, release)
        emit(Notice(f"{spec.name}: starting {spec.replicas} server(s) of {release.digest[:19]}…"))
        new = [self.start_server(spec, prepared, release) for _ in range(spec.replicas)]
        failure = self._wait_ready(new, spec.ready_timeout)
        if failure is not None:
            self.stop_backends(new)
            return self._finish(
                spec,
                state,
                release,
                previous,
                "rolled_back",
                f"the new version never got ready: {failure}",
                started,
                old,
            )
        self.switch(spec.name, new)
        state.active = {
            "digest": release.digest,
            "commit": release.commit,
            "backends": [b.doc() for b in new],
        }
        self.save(spec.name, state)
        emit(Notice(f"{spec.name}: traffic switched to {release.digest[:19]}…"))
        time.sleep(DRAIN_SECONDS)
        failure = self._check(new)
        if failure is not None:
            living = [b for b in old if self.serving(b)]
            if living:
                self.switch(spec.name, living)
                state.active = {
                    "digest": previous,
                    "commit": "",
                    "backends": [b.doc() for b in living],
                }
            self.stop_backends(new)
            return self._finish(
                spec,
                state,
                release,
                previous,
                "rolled_back",
                f"the new version failed after the switch: {failure}",
                started,
                living,
            )
        self.stop_backends([b for b in old if self.serving(b)])
        return self._finish(
            spec,
            state,
            release,
            previous,
            "succeeded",
            "ready; traffic switched; old servers drained",
            started,
            new,
        )

    def _finish(
        self,
        spec: DeploymentSpec,
        state: State,
        release: Release,
        previous: str | None,
        outcome: str,
        reason: str,
        started: float,
        backends: list[Backend],
    ) -> Rollout:
        result = Rollout(
            spec.name,
            release.digest,
            previous,
            outcome,
            reason,
            time.monotonic() - started,
            tuple(backends),
        )
        state.last_rollout = {
            "digest": release.digest,
            "outcome": outcome,
            "reason": reason,
            "at": time.time(),
            "summary": f"{outcome} {release.digest[:19]}… ({reason})",
        }
        self.save(spec.name, state)
        return result

    def _ensure_router(self, spec: DeploymentSpec, state: State, emit: Emit) -> None:
        router = state.router
        if router is not None and alive(int(router["pid"]), "deploy.router"):
            if (router["host"], int(router["port"])) == (spec.host, spec.port):
                return
            terminate([int(router["pid"])])
        with socket.socket() as probe:
            try:
                probe.bind((spec.host, spec.port))
            except OSError as exc:
                raise DeployError(
                    f"deployment {spec.name}: {spec.host}:{spec.port} is taken by another "
                    f"process ({exc.strerror})",
                    hint="stop it, or declare another port",
                ) from exc
        home = self.home(spec.name)
        (home / "logs").mkdir(parents=True, exist_ok=True)
        if not (home / "backends.json").exists():
            self.switch(spec.name, state.backends)
        log = open(home / "logs" / "router.log", "ab")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "canon.executors.deploy.router",
                "--backends",
                str(home / "backends.json"),
                "--host",
                spec.host,
                "--port",
                str(spec.port),
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DeployTargetError(
                    f"deployment {spec.name}: the router exited at start",
                    hint=f"see {home / 'logs' / 'router.log'}",
                )
            with socket.socket() as s:
                if s.connect_ex((spec.host, spec.port)) == 0:
                    break
            time.sleep(0.05)
        state.router = {"pid": process.pid, "host": spec.host, "port": spec.port}
        self.save(spec.name, state)
        emit(Notice(f"{spec.name}: router listening on {spec.host}:{spec.port}"))

    # -- what is specific to processes (the podman target overrides these) -------

    def prepare(self, spec: DeploymentSpec, release: Release) -> str:
        """The image, ready to start: here the path of its extracted rootfs."""
        return str(extract_image(self.layout, release.digest, self.home(spec.name) / "images"))

    def running(self, backend: Backend) -> bool:
        return _running(backend.pid)

    def serving(self, backend: Backend) -> bool:
        """Still a model server canon started (PIDs are reused: the command line is checked)."""
        return alive(backend.pid, SERVER_MARKER)

    def stop_backends(self, backends: list[Backend]) -> None:
        terminate([b.pid for b in backends])

    def start_server(self, spec: DeploymentSpec, prepared: str, release: Release) -> Backend:
        rootfs = Path(prepared)
        port = free_port()
        logs = self.home(spec.name) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = open(logs / f"server-{port}.log", "ab")  # noqa: SIM115 - the child owns it
        repo = rootfs / "canon" / "repo"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "canon.interfaces.cli.main",
                "serve",
                "--image-root",
                str(rootfs),
                "--image-digest",
                release.digest,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=repo if repo.is_dir() else rootfs,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        log.close()
        return Backend(process.pid, port, release.digest)

    def _wait_ready(self, backends: list[Backend], timeout: float) -> str | None:
        """None when every backend's /readyz answered 200; else why not."""
        deadline = time.monotonic() + timeout
        waiting = list(backends)
        reason = "no answer"
        while waiting and time.monotonic() < deadline:
            for b in list(waiting):
                try:
                    answer = httpx.get(f"http://127.0.0.1:{b.port}/readyz", timeout=2)
                except httpx.HTTPError:
                    if not self.running(b):
                        return f"{b.describe()} exited at start"
                    continue
                if answer.status_code == 200:
                    waiting.remove(b)
                else:
                    body = _json(answer)
                    reason = str(body.get("reason", answer.text[:200]))
                    if body.get("state") == "failed":
                        return reason
            time.sleep(0.1)
        return None if not waiting else f"not ready after {timeout:g}s ({reason})"

    def _check(self, backends: list[Backend]) -> str | None:
        for b in backends:
            if not self.running(b):
                return f"{b.describe()} exited"
            if get_json(f"http://127.0.0.1:{b.port}/readyz") is None:
                return f"server on port {b.port} is no longer ready"
        return None

    def stop(self, spec: DeploymentSpec) -> None:
        state = self.load(spec.name)
        self.stop_backends([b for b in state.backends if self.serving(b)])
        if state.router and alive(int(state.router["pid"]), "deploy.router"):
            terminate([int(state.router["pid"])])
        state.router, state.active = None, None
        self.save(spec.name, state)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
