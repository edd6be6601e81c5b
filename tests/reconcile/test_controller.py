"""`canon controller` for real: a bare Git remote, a developer clone that pushes, the
controller's own clone; a signed webhook makes the new model serve; a broken commit
stalls without undeploying anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from canon.reconcile.webhook import sign
from tests.images.conftest import CANON, GIT_ENV, TRAIN_PY, free_port, make_project

pytestmark = pytest.mark.slow
SECRET = "test-secret-123"


def wait_for(check, timeout: float = 60) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("timed out")


def hook(url: str, body: bytes, delivery: str, secret: str = SECRET) -> httpx.Response:
    return httpx.post(url + "/hooks/git", content=body, headers={
        "x-hub-signature-256": sign(secret.encode(), body), "x-github-delivery": delivery,
        "content-type": "application/json"})


def test_webhook_to_serving_and_a_broken_commit_stalls(tmp_path: Path) -> None:
    env = {**os.environ, **GIT_ENV, "NO_COLOR": "1"}
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    port, cport = free_port(), free_port()
    dev = make_project(tmp_path / "dev")
    with (dev.root / "canon.yaml").open("a") as f:
        f.write(f"deployments:\n  local: {{target: local, artifact: model, port: {port}}}\n")
    dev.git("commit", "-qam", "deploy")
    dev.git("remote", "add", "origin", str(origin))
    dev.git("push", "-q", "origin", "HEAD:main")
    ctl = tmp_path / "ctl"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(origin), str(ctl)], check=True, env=env)

    refused = subprocess.run([CANON, "controller", "--port", str(cport)], cwd=ctl, env=env,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "webhook secret is empty" in refused.stderr

    log = open(tmp_path / "controller.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [CANON, "controller", "--interval", "3600", "--port", str(cport)], cwd=ctl,
        env={**env, "CANON_WEBHOOK_SECRET": SECRET}, stdout=log, stderr=log)
    url, served = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(url + "/readyz").status_code == 200, 120)
        predict = {"inputs": {"x": [1.0, 1.0]}}
        assert httpx.post(served + "/predict", json=predict).json()["predictions"]["score"] == 2.5

        (dev.root / "train.py").write_text(TRAIN_PY.replace("[0.5, 2.0]", "[1.0, 2.0]"))
        dev.git("commit", "-qam", "v2")
        dev.git("push", "-q", "origin", "HEAD:main")
        head = dev.git("rev-parse", "HEAD")
        body = json.dumps({"ref": "refs/heads/main", "after": head}).encode()
        assert hook(url, body, "d-1", secret="wrong").status_code == 401
        started = time.monotonic()
        assert hook(url, body, "d-1").status_code == 202
        assert hook(url, body, "d-1").json()["status"] == "duplicate delivery ignored"
        wait_for(lambda: httpx.post(served + "/predict", json=predict).json()[
            "predictions"]["score"] == 3.0, 120)
        lead = time.monotonic() - started
        print(f"lead time webhook -> new version serving: {lead:.2f}s")
        assert lead < 30
        wait_for(lambda: httpx.get(url + "/status").json()["last_applied"] == head)

        (dev.root / "canon.yaml").write_text(
            (dev.root / "canon.yaml").read_text().replace("artifact: model", "artifact: modle"))
        dev.git("commit", "-qam", "broken")
        dev.git("push", "-q", "origin", "HEAD:main")
        assert hook(url, b"{}", "d-2").status_code == 202
        wait_for(lambda: httpx.get(url + "/status").json()["condition"] == "Stalled")
        status = httpx.get(url + "/status").json()
        assert status["reason"] == "DeclarationError" and "modle" in status["message"]
        assert status["last_applied"] == head
        assert httpx.get(url + "/readyz").status_code == 503
        # nothing was undeployed: v2 still serves
        assert httpx.post(served + "/predict", json=predict).json()["predictions"]["score"] == 3.0
        metrics = httpx.get(url + "/metrics").text
        assert 'canon_controller_webhooks_total{outcome="duplicate"} 1' in metrics
        assert 'canon_controller_reconciles_total{condition="Stalled"} 1' in metrics
        saved = json.loads((ctl / ".canon" / "controller" / "status.json").read_text())
        assert saved["condition"] == "Stalled" and saved["last_applied"] == head
        assert saved["stalled_on"] == dev.git("rev-parse", "HEAD")  # kept across restarts
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        subprocess.run([CANON, "deploy", "--stop"], cwd=ctl, env=env, capture_output=True,
                       timeout=60)
        # the broken canon.yaml cannot be loaded: stop from the last good commit
        subprocess.run(["git", "checkout", "-q", "--force", "--detach", head], cwd=ctl)
        subprocess.run([CANON, "deploy", "--stop"], cwd=ctl, env=env, capture_output=True,
                       timeout=60)
