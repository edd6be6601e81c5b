"""A model image's filesystem, made by hand, and a real ``canon serve`` (uvicorn) on
127.0.0.1 and a free port, stopped by its PID."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CANON = str(Path(sys.executable).with_name("canon"))

TOY = """
import json, os
from pathlib import Path

MODEL = Path(__file__).resolve().parents[2] / "build" / "model.json"
_w = json.loads(MODEL.read_text())

def predict(x):
    if not isinstance(x, list) or len(x) != len(_w["w"]):
        raise ValueError(f"expected a list of {len(_w['w'])} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x):
        raise TypeError("every feature must be a number")
    if x[0] == 666:
        raise RuntimeError("a bug in the handler")
    return {"score": sum(a * b for a, b in zip(_w["w"], x)) + _w["b"]}

def example():
    return [1, 2, 3]
"""


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image_root(
    root: Path,
    *,
    handler_source: str = TOY,
    model: bytes = b'{"w": [1, 2, 3], "b": 0.5}',
    extra_files: dict[str, bytes] | None = None,
    trust_pickle: bool = False,
) -> Path:
    repo = root / "canon" / "repo"
    (repo / "src" / "toy").mkdir(parents=True)
    (repo / "build").mkdir()
    (repo / "src" / "toy" / "__init__.py").write_text("")
    (repo / "src" / "toy" / "serve.py").write_text(handler_source)
    files = {"build/model.json": model, **(extra_files or {})}
    for rel, data in files.items():
        (repo / rel).write_bytes(data)
    provenance: dict[str, Any] = {
        "artifact": "model",
        "kind": "model",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "files": {rel: sha256(data) for rel, data in files.items()},
        "handler": "toy.serve:predict",
        "params": {"train": {"C": 1.0}},
    }
    if trust_pickle:
        provenance["trust_pickle"] = True
    (root / "canon" / "provenance.json").write_text(json.dumps(provenance))
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=10, **kwargs)


def start_server(image_root: Path, *args: str, ready: bool = True) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [CANON, "serve", "--image-root", str(image_root), "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    server = Server(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"canon serve exited: {process.stderr.read()!r}")  # type: ignore[union-attr]
        try:
            answer = server.get("/readyz")
            if answer.status_code == 200 or (not ready and answer.json()["state"] == "failed"):
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    stop(server)
    raise AssertionError("canon serve never answered /readyz")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(image_root: Path, *args: str, ready: bool = True) -> Server:
        server = start_server(image_root, *args, ready=ready)
        started.append(server)
        return server

    yield start
    for server in started:
        stop(server)
