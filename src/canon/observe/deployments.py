"""Live deployments on the local target, observed (read-only: files, /proc, HTTP GETs).

What the local target recorded (``.canon/deploy/<env>/state.json``) is a claim; this module
checks it against the world and names every difference as drift: the router or a model
server is not running (a PID is trusted only if its command line is canon's — PIDs are
reused), a server is not ready, nothing answers on the declared port, or the port answers
with another image than canon deployed (``GET /provenance``: someone started a version
by hand).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from canon.declare.project import DeploymentSpec
from canon.errors import DeployError

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
    state = read_state(home(root, spec.name) / "state.json")
    last = (state.get("last_rollout") or {}).get("summary")
    router, active = state.get("router"), state.get("active")
    if active is None and router is None:
        return Live(spec.name, None, last_rollout=last)
    drift: list[str] = []
    if router is None or not alive(int(router["pid"]), ROUTER_MARKER):
        drift.append("the router is not running")
    ready = 0
    for b in (active or {}).get("backends", []):
        pid, port = int(b["pid"]), int(b["port"])
        if not alive(pid, SERVER_MARKER):
            drift.append(f"model server pid {pid} (port {port}) died")
        elif get_json(f"http://127.0.0.1:{port}/readyz") is not None:
            ready += 1
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
