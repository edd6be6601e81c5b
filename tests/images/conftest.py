"""Real components for image tests: the CNCF distribution registry on 127.0.0.1, and
small canon projects with base and model images, committed to Git."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

CANON = shutil.which("canon", path=str(Path(sys.executable).parent)) or "canon"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_AUTHOR_DATE": "2025-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2025-01-02T03:04:05Z",
}


def need(tool: str) -> str:
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{tool} is not installed: `make system-deps` (as root) installs it")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    root: Path


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """``docker-registry serve`` with a private config: loopback only, temp storage."""
    binary = need("docker-registry")
    base = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = base / "config.yml"
    config.write_text(textwrap.dedent(f"""\
        version: 0.1
        log: {{level: error}}
        storage:
          filesystem: {{rootdirectory: {base / 'data'}}}
          delete: {{enabled: true}}
        http:
          addr: 127.0.0.1:{port}
        """))
    log = open(base / "registry.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"registry did not start: {(base / 'registry.log').read_text()}")
            time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", base)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


SERVE_PY = '''\
import json
import pathlib

MODEL = pathlib.Path(__file__).resolve().parents[2] / "build" / "model.json"


def predict(request):
    weights = json.loads(MODEL.read_text())
    return {"score": sum(w * x for w, x in zip(weights["w"], request["x"]))}
'''

TRAIN_PY = '''\
import json, pathlib, sys
pathlib.Path("build").mkdir(exist_ok=True)
pathlib.Path("build/model.json").write_text(json.dumps({"w": [0.5, 2.0]}, sort_keys=True))
'''


def canon_yaml(base_from: str | None = None, requirements: bool = False) -> str:
    env = 'environment: {python: "3.11", requirements: requirements.lock}\n' if requirements else ""
    frm = f", from: \"{base_from}\"" if base_from else ""
    return (
        "project: toy\n" + env +
        "stages:\n  train:\n    cmd: [python3, train.py]\n    deps: [train.py]\n"
        "    outs: [build/model.json]\n"
        "artifacts:\n"
        f"  base: {{kind: base, pythonpath: [src]{frm}}}\n"
        "  model: {kind: model, from: base, add: [build/model.json],"
        " serve: {handler: \"toy.serve:predict\"}}\n"
    )


@dataclass
class Project:
    root: Path

    def canon(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [CANON, *args], cwd=self.root, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
        )
        if check and done.returncode != 0:
            raise AssertionError(f"canon {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True,
                              check=True, env={**os.environ, **GIT_ENV}).stdout.strip()

    def digest(self, name: str) -> str:
        import yaml
        lock = yaml.safe_load((self.root / "canon.lock").read_text())
        return str(lock["profiles"]["default"]["images"][name]["digest"])


def make_project(root: Path, *, base_from: str | None = None, requirements: str | None = None,
                 extra: dict[str, str] | None = None) -> Project:
    root.mkdir(parents=True)
    files = {
        "canon.yaml": canon_yaml(base_from, requirements is not None),
        "train.py": TRAIN_PY,
        "src/toy/__init__.py": "",
        "src/toy/serve.py": SERVE_PY,
        ".gitignore": ".canon/\nbuild/\n",
        **({"requirements.lock": requirements} if requirements is not None else {}),
        **(extra or {}),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    p = Project(root)
    p.git("init", "-q")
    p.git("add", "-A")
    p.git("commit", "-qm", "toy")
    return p


@pytest.fixture
def toy(tmp_path: Path) -> Project:
    return make_project(tmp_path / "toy")
