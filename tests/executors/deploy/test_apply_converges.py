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


def test_rollback_is_a_commit_and_a_rollout(tmp_path: Path) -> None:
    from canon.stores.ledger import Ledger
    from tests.images.conftest import GIT_ENV, TRAIN_PY

    port = free_port()
    p = make_project(tmp_path / "toy")
    with (p.root / "canon.yaml").open("a") as f:
        f.write(f"deployments:\n  local: {{target: local, artifact: model, port: {port}}}\n")
    p.git("commit", "-qam", "deploy")
    url = f"http://127.0.0.1:{port}"
    try:
        p.canon("apply")
        p.git("add", "canon.lock")
        p.git("commit", "-qm", "lock v1")
        v1 = p.digest("model")
        (p.root / "train.py").write_text(TRAIN_PY.replace("[0.5, 2.0]", "[1.0, 2.0]"))
        p.git("commit", "-qam", "v2")
        p.canon("apply")
        p.git("commit", "-qam", "lock v2")
        v2 = p.digest("model")
        assert httpx.get(url + "/provenance").json()["image"] == v2

        done = p.canon("rollback", "local", env=GIT_ENV)
        assert "succeeded" in done.stdout
        assert p.digest("model") == v1
        assert httpx.get(url + "/provenance").json()["image"] == v1
        assert p.git("log", "-1", "--format=%s").startswith("canon rollback local: model")
        assert p.git("status", "--porcelain", "canon.lock") == ""
        ledger = Ledger(p.root / ".canon" / "ledger.db")
        latest = ledger.rollouts("local")[0]
        ledger.close()
        assert (latest["digest"], latest["previous"], latest["outcome"]) == (v1, v2, "succeeded")
        with pytest.raises(AssertionError, match=r"canon\.lock has uncommitted changes"):
            (p.root / "canon.lock").write_text((p.root / "canon.lock").read_text() + "\n")
            p.canon("rollback", "local", env=GIT_ENV)
    finally:
        p.canon("deploy", "--stop", check=False)
