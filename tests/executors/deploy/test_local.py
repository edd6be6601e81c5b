"""The local target for real: `canon deploy` starts a router and model servers from the
extracted model image; a client hammering the port during rollouts sees zero failures."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from canon.stores.ledger import Ledger
from tests.images.conftest import TRAIN_PY, Project, free_port, make_project

pytestmark = pytest.mark.slow

SERVE = """\
import json
import pathlib

MODEL = pathlib.Path(__file__).resolve().parents[2] / "build" / "model.json"
WEIGHTS = json.loads(MODEL.read_text())


def predict(request):
    return {"score": sum(w * x for w, x in zip(WEIGHTS["w"], request["x"]))}


def example():
    return {"x": [1, 1]}
"""

BROKEN = SERVE.replace('return {"x": [1, 1]}', 'raise ValueError("self-check broken on purpose")')


class Hammer:
    """Sends /predict in a loop from two threads; counts answers by score and failures."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.scores: Counter[float] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post(self.url + "/predict", json={"inputs": {"x": [1, 1]}})
                    if answer.status_code != 200:
                        self.failures.append(f"{answer.status_code} {answer.text[:100]}")
                    else:
                        self.scores[answer.json()["predictions"]["score"]] += 1
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))

    def __enter__(self) -> Hammer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def commit(p: Project, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (p.root / rel).write_text(text)
    p.git("add", "-A")
    p.git("commit", "-qm", "change")


def test_rollouts_lose_no_request_and_a_broken_version_is_rolled_back(tmp_path: Path) -> None:
    port = free_port()
    p = make_project(tmp_path / "toy", extra={"src/toy/serve.py": SERVE})
    with (p.root / "canon.yaml").open("a") as f:
        f.write(f"deployments:\n  local: {{target: local, artifact: model, port: {port}}}\n")
    commit(p, {})
    url = f"http://127.0.0.1:{port}"
    try:
        first = p.canon("apply")  # runs the stage, builds the images, rolls local out
        assert "deployment.local succeeded" in first.stdout, first.stdout
        v1 = p.digest("model")
        assert httpx.get(url + "/provenance").json()["image"] == v1
        assert httpx.get(url + "/provenance").json()["verified"] is True

        # a new model (weights 0.5, 2.0 -> 1.0, 2.0) under constant load
        commit(p, {"train.py": TRAIN_PY.replace("[0.5, 2.0]", "[1.0, 2.0]")})
        p.canon("apply", "train")  # stage targets: no images, no rollout
        p.canon("build")
        v2 = p.digest("model")
        assert v2 != v1
        with Hammer(url) as hammer:
            time.sleep(0.5)
            second = p.canon("deploy")
            time.sleep(0.5)
        assert "succeeded" in second.stdout, second.stdout
        print(f"rollout under load: {sum(hammer.scores.values())} requests "
              f"({dict(hammer.scores)}), {len(hammer.failures)} failed")
        assert hammer.failures == []
        assert hammer.scores[2.5] > 0 and hammer.scores[3.0] > 0, hammer.scores
        assert httpx.get(url + "/provenance").json()["image"] == v2

        # a version whose /readyz never passes gets no traffic and is rolled back
        commit(p, {"src/toy/serve.py": BROKEN})
        p.canon("build")
        v3 = p.digest("model")
        with Hammer(url) as hammer:
            time.sleep(0.3)
            third = p.canon("deploy", check=False)
            time.sleep(0.3)
        assert third.returncode == 1
        assert "rolled_back" in third.stdout and "self-check broken on purpose" in third.stdout
        print(f"rolled-back rollout under load: {sum(hammer.scores.values())} requests, "
              f"{len(hammer.failures)} failed")
        assert hammer.failures == []
        assert set(hammer.scores) == {3.0}
        assert httpx.get(url + "/provenance").json()["image"] == v2

        ledger = Ledger(p.root / ".canon" / "ledger.db")
        rows = ledger.rollouts("local")
        ledger.close()
        assert [r["outcome"] for r in rows] == ["rolled_back", "succeeded", "succeeded"]
        assert rows[0]["digest"] == v3 and rows[0]["previous"] == v2
        assert "self-check broken on purpose" in rows[0]["reason"]

        # drift: the running server dies -> status says so; deploy heals it
        status = p.canon("deploy", "--status", "--json", check=False)
        state = json.loads((p.root / ".canon/deploy/local/state.json").read_text())
        pid = state["active"]["backends"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        status = p.canon("deploy", "--status", check=False)
        assert status.returncode == 1
        assert f"model server pid {pid}" in status.stdout and "died" in status.stdout
        assert "OUT OF SYNC" in status.stdout
        commit(p, {"src/toy/serve.py": SERVE})  # back to a good handler: v2's content
        healed = p.canon("apply")
        assert "deployment.local succeeded" in healed.stdout
        assert p.canon("deploy", "--status", check=False).returncode == 0
    finally:
        p.canon("deploy", "--stop", check=False)


def test_a_version_that_dies_after_the_switch_gets_the_traffic_taken_back(
    tmp_path: Path,
) -> None:
    import subprocess

    from tests.images.conftest import CANON

    port = free_port()
    p = make_project(tmp_path / "toy", extra={"src/toy/serve.py": SERVE})
    with (p.root / "canon.yaml").open("a") as f:
        f.write(f"deployments:\n  local: {{target: local, artifact: model, port: {port}}}\n")
    commit(p, {})
    url = f"http://127.0.0.1:{port}"
    home = p.root / ".canon/deploy/local"
    try:
        p.canon("apply")
        v1 = p.digest("model")
        commit(p, {"train.py": TRAIN_PY.replace("[0.5, 2.0]", "[1.0, 2.0]")})
        p.canon("apply", "train")
        p.canon("build")
        before = (home / "backends.json").read_bytes()
        with Hammer(url) as hammer:
            deploy = subprocess.Popen(
                [CANON, "deploy"],
                cwd=p.root,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            deadline = time.monotonic() + 60
            while (home / "backends.json").read_bytes() == before:
                assert time.monotonic() < deadline, "the router was never switched"
                time.sleep(0.01)
            # switched: kill the new version before its post-switch check (1 s later)
            while True:
                state = json.loads((home / "state.json").read_text())
                if state["active"]["digest"] != v1:
                    break
                assert time.monotonic() < deadline, "the new version was never recorded"
                time.sleep(0.01)
            os.kill(state["active"]["backends"][0]["pid"], signal.SIGKILL)
            out, _ = deploy.communicate(timeout=60)
            time.sleep(0.3)
        assert deploy.returncode == 1, out
        assert "rolled_back" in out and "failed after the switch" in out
        assert hammer.failures == []
        assert httpx.get(url + "/provenance").json()["image"] == v1
        assert p.canon("deploy", "--status", check=False).stdout.count("drift") == 0
    finally:
        p.canon("deploy", "--stop", check=False)
