"""`canon status` shows deployments with reasons; `canon apply` builds and rolls them out,
and heals drift (a dead model server) on the next apply."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.images.conftest import free_port, make_project

pytestmark = pytest.mark.slow


def test_status_and_apply_converge_a_local_deployment(tmp_path: Path) -> None:
    import json

    port = free_port()
    p = make_project(tmp_path / "toy")
    with (p.root / "canon.yaml").open("a") as f:
        f.write(f"deployments:\n  local: {{target: local, artifact: model, port: {port}}}\n")
    p.git("commit", "-qam", "deploy")
    try:
        status = p.canon("status", check=False)
        assert status.returncode == 1
        assert "deploy  deployment.local" in status.stdout
        assert "UPSTREAM_CHANGED model" in status.stdout

        p.canon("apply")
        answer = httpx.post(f"http://127.0.0.1:{port}/predict",
                            json={"inputs": {"x": [1.0, 1.0]}}, timeout=10)
        assert answer.json() == {"predictions": {"score": 2.5}}
        assert httpx.get(f"http://127.0.0.1:{port}/provenance").json()["image"] == p.digest(
            "model")
        assert p.canon("status", check=False).returncode == 0

        state = json.loads((p.root / ".canon/deploy/local/state.json").read_text())
        os.kill(state["active"]["backends"][0]["pid"], signal.SIGKILL)
        time.sleep(0.3)
        status = p.canon("status", check=False)
        assert status.returncode == 1
        assert "DEPLOYMENT_DRIFT: model server pid" in status.stdout
        p.canon("apply")
        assert p.canon("status", check=False).returncode == 0
    finally:
        p.canon("deploy", "--stop", check=False)
