"""Live deployments on the local target, observed (read-only: files, /proc, HTTP GETs).

What the local target recorded (``.canon/deploy/<env>/state.json``) is a claim; this module
checks it against the world and names every difference as drift: the router or a model
server is not running (a PID is trusted only if its command line is canon's — PIDs are
reused), a server is not ready, nothing answers on the declared port, or the port answers
with another image than canon deployed (``GET /provenance``: someone started a version
by hand). The podman target is observed the same way, its backends being containers
(``podman ps -a`` by label: exited, gone, or another one running outside a rollout).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from canon.declare.project import DeploymentSpec
from canon.errors import DeployError, DeployTargetError

ROUTER_MARKER = "deploy.router"
SERVER_MARKER = "serve"


@dataclass(frozen=True)
class Live:
    """A deployment as observed. ``digest`` is what answers on the port (None: nothing)."""

    environment: str
    digest: str | None
    ready: int = 0
    replicas: int = 0
    drift: tuple[str, ...] = ()  # human reasons: "model server pid 1234 died", ...
    last_rollout: str | None = None

    @property
    def healthy(self) -> bool:
        return self.digest is not None and not self.drift and self.ready >= self.replicas > 0


def home(root: Path, environment: str) -> Path:
    return root / ".canon" / "deploy" / environment


def read_state(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DeployError(
            f"{path} is damaged ({exc})",
            hint=f"stop the deployment's processes and remove {path.parent}",
        ) from exc
    if not isinstance(raw, dict):
        raise DeployError(f"{path} is damaged (not an object)")
    return raw


def process_state(pid: int) -> str | None:
    """The state letter from /proc/PID/stat (R, S, Z, …), or None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def alive(pid: int, marker: str) -> bool:
    """``pid`` runs (not a zombie) and its command line holds ``marker``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline and process_state(pid) not in (None, "Z")


def get_json(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The JSON object of a 200 answer, or None."""
    try:
        answer = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    try:
        body = answer.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def observe_local(root: Path, spec: DeploymentSpec) -> Live:
    def backend(b: Mapping[str, Any]) -> str | None:
        pid, port = int(b["pid"]), int(b["port"])
        if not alive(pid, SERVER_MARKER):
            return f"model server pid {pid} (port {port}) died"
        return None

    return _observe(root, spec, backend)


def _observe(
    root: Path,
    spec: DeploymentSpec,
    backend: Callable[[Mapping[str, Any]], str | None],
    extra: Callable[[Mapping[str, Any]], list[str]] | None = None,
) -> Live:
    """What the state file claims, checked: the router, each backend (``backend`` says
    why one is down, or None), what answers on the port; ``extra`` adds target drift."""
    state = read_state(home(root, spec.name) / "state.json")
    last = (state.get("last_rollout") or {}).get("summary")
    router, active = state.get("router"), state.get("active")
    if active is None and router is None:
        stray = extra(state) if extra is not None else []
        return Live(spec.name, None, drift=tuple(stray), last_rollout=last)
    drift: list[str] = []
    if router is None or not alive(int(router["pid"]), ROUTER_MARKER):
        drift.append("the router is not running")
    ready = 0
    for b in (active or {}).get("backends", []):
        down = backend(b)
        if down is not None:
            drift.append(down)
        elif get_json(f"http://127.0.0.1:{int(b['port'])}/readyz") is not None:
            ready += 1
    if extra is not None:
        drift.extend(extra(state))
    answering = get_json(f"http://{spec.host}:{spec.port}/provenance")
    live_digest = answering.get("image") if answering else None
    deployed = active["digest"] if active else None
    if answering is None:
        drift.append(f"nothing answers on {spec.host}:{spec.port}")
    elif live_digest != deployed:
        drift.append(
            f"port {spec.port} answers with image {str(live_digest)[:19]}…, canon deployed "
            f"{str(deployed)[:19]}… (started by hand?)"
        )
    return Live(spec.name, live_digest, ready, spec.replicas, tuple(drift), last)


# -- podman: the same router, the model image in containers behind it ----------------

DEPLOYMENT_LABEL = "dev.canon.deployment"  # "<project key>/<env>"
DIGEST_LABEL = "dev.canon.image-digest"


def podman_binary() -> str:
    found = shutil.which("podman")
    if found is None:
        raise DeployError(
            "target: podman needs podman, which is not on PATH",
            hint="install podman (and runc or crun), or use target: local (no container "
            "runtime needed)",
        )
    return found


def deployment_label(root: Path, environment: str) -> str:
    """Which project's deployment a container belongs to (two projects may both have a
    deployment named ``prod``)."""
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return f"{key}/{environment}"


def podman_containers(podman: str, label: str) -> list[dict[str, Any]]:
    """``podman ps -a`` of the containers labelled ``label``: name, state, digest, exit."""
    try:
        done = subprocess.run(
            [
                podman,
                "ps",
                "-a",
                "--format",
                "json",
                "--filter",
                f"label={DEPLOYMENT_LABEL}={label}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployTargetError(f"podman ps failed: {exc}") from exc
    if done.returncode != 0:
        raise DeployTargetError(
            f"podman ps failed: {done.stderr.strip()[-300:]}",
            hint="check `podman info` (storage, runtime) as the user canon runs as",
        )
    try:
        rows = json.loads(done.stdout or "[]")
    except ValueError as exc:
        raise DeployTargetError(f"podman ps printed no JSON ({exc})") from exc
    found = []
    for row in rows if isinstance(rows, list) else []:
        names = row.get("Names") or []
        labels = row.get("Labels") or {}
        found.append(
            {
                "name": names[0] if names else str(row.get("Id", ""))[:12],
                "state": str(row.get("State", "")),
                "digest": labels.get(DIGEST_LABEL),
                "exit": row.get("ExitCode"),
            }
        )
    return found


def observe_podman(root: Path, spec: DeploymentSpec) -> Live:
    podman = podman_binary()
    containers = {
        c["name"]: c for c in podman_containers(podman, deployment_label(root, spec.name))
    }

    def backend(b: Mapping[str, Any]) -> str | None:
        name = str(b.get("container"))
        found = containers.get(name)
        if found is None:
            return f"container {name} (port {b['port']}) is gone"
        if found["state"] != "running":
            return f"container {name} (port {b['port']}) is {found['state']} (exit {found['exit']})"
        return None

    def extra(state: Mapping[str, Any]) -> list[str]:
        ours = {str(b.get("container")) for b in (state.get("active") or {}).get("backends", [])}
        return [
            f"container {c['name']} runs image {str(c['digest'])[:19]}… outside canon's "
            "rollout (started by hand?)"
            for c in containers.values()
            if c["state"] == "running" and c["name"] not in ours
        ]

    return _observe(root, spec, backend, extra)
