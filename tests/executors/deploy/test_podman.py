"""The podman target for real (podman + runc, private storage and containers.conf): the
model image on a debootstrap base runs its own entrypoint in containers (``--network
host``) behind the local target's router; a client hammering the port through a rollout
and through a rolled-back one sees zero failures; drift (a container removed) is seen and
healed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from canon.observe.deployments import DEPLOYMENT_LABEL, DIGEST_LABEL, deployment_label
from canon.stores.ledger import Ledger
from canon.stores.oci.layout import ImageLayout
from canon.stores.oci.spec import parse_manifest
from tests.executors.deploy.test_local import BROKEN, SERVE, Hammer, commit
from tests.images.conftest import TRAIN_PY, Project, free_port, make_project, registry
from tests.images.test_podman import debian, podman

pytestmark = pytest.mark.slow
__all__ = ["debian", "podman", "registry"]  # fixtures, shared with tests/images


def _containers(podman: list[str]) -> list[dict[str, object]]:
    out = subprocess.run(
        [*podman, "ps", "-a", "--format", "json"], capture_output=True, text=True, check=True
    ).stdout
    rows = json.loads(out or "[]")
    assert isinstance(rows, list)
    return rows


def _image_id(p: Project, digest: str) -> str:
    """The image's ID in podman's storage: its config digest."""
    layout = ImageLayout(p.root / ".canon/images")
    return parse_manifest(layout.read_bytes(digest)).config.digest[7:]  # type: ignore[arg-type]


def test_podman_rollouts_lose_no_request_and_a_never_ready_version_is_rolled_back(
    tmp_path: Path, debian: str, podman: list[str]
) -> None:
    port = free_port()
    p = make_project(tmp_path / "toy", base_from=debian, extra={"src/toy/serve.py": SERVE})
    with (p.root / "canon.yaml").open("a") as f:
        f.write(f"deployments:\n  box: {{target: podman, artifact: model, port: {port}}}\n")
    p.git("commit", "-qam", "deploy on podman")
    url = f"http://127.0.0.1:{port}"
    try:
        first = p.canon("apply")
        assert "deployment.box succeeded" in first.stdout, first.stdout
        v1 = p.digest("model")
        assert httpx.post(f"{url}/predict", json={"inputs": {"x": [1, 1]}}).json() == {
            "predictions": {"score": 2.5}
        }
        prov = httpx.get(f"{url}/provenance").json()
        assert (prov["image"], prov["verified"]) == (v1, True)
        running = [c for c in _containers(podman) if c["State"] == "running"]
        assert len(running) == 1
        labels = running[0]["Labels"]
        assert isinstance(labels, dict) and labels["dev.canon.image-digest"] == v1
        assert p.canon("status", check=False).returncode == 0

        # v2: new weights; two clients hammer the port through the switch
        with Hammer(url) as hammer:
            commit(p, {"train.py": TRAIN_PY.replace("[0.5, 2.0]", "[1.0, 2.0]")})
            second = p.canon("apply")
        assert "deployment.box succeeded" in second.stdout, second.stdout
        print(
            f"podman rollout under load: {sum(hammer.scores.values())} requests "
            f"({dict(hammer.scores)}), {len(hammer.failures)} failed"
        )
        assert hammer.failures == []
        assert hammer.scores[3.0] > 0, "v2 answered"
        v2 = p.digest("model")
        assert httpx.get(f"{url}/provenance").json()["image"] == v2
        running = [c for c in _containers(podman) if c["State"] == "running"]
        assert [c["Labels"]["dev.canon.image-digest"] for c in running] == [v2]  # type: ignore[index]

        # v3: its self-check fails, /readyz never passes: rolled back, v2 keeps serving
        with Hammer(url) as hammer:
            commit(p, {"src/toy/serve.py": BROKEN})
            third = p.canon("apply", check=False)
        assert third.returncode == 4, third.stdout + third.stderr
        assert "rolled_back" in third.stdout and "self-check broken on purpose" in third.stdout
        print(
            f"podman rolled-back rollout under load: {sum(hammer.scores.values())} requests, "
            f"{len(hammer.failures)} failed"
        )
        assert hammer.failures == []
        assert set(hammer.scores) == {3.0}, "only v2 answered"
        assert httpx.get(f"{url}/provenance").json()["image"] == v2
        assert len([c for c in _containers(podman) if c["State"] == "running"]) == 1
        ledger = Ledger(p.root / ".canon" / "ledger.db")
        outcomes = [(r["outcome"], r["previous"]) for r in ledger.rollouts("box")]
        ledger.close()
        assert outcomes[0] == ("rolled_back", v2) and outcomes[1] == ("succeeded", v1)

        # drift: the container is removed by hand; status names it, apply heals it
        commit(p, {"src/toy/serve.py": SERVE})  # a good handler again: v4
        p.canon("apply")
        v4 = p.digest("model")
        state = json.loads((p.root / ".canon/deploy/box/state.json").read_text())
        name = state["active"]["backends"][0]["container"]
        subprocess.run([*podman, "rm", "-f", name], check=True, capture_output=True)
        status = p.canon("status", check=False)
        assert status.returncode == 1
        assert f"container {name}" in status.stdout and "is gone" in status.stdout
        healed = p.canon("apply")
        assert "deployment.box succeeded" in healed.stdout, healed.stdout
        assert httpx.get(f"{url}/provenance").json()["image"] == v4
        assert p.canon("status", check=False).returncode == 0

        # drift: a container of the deployment started by hand (v1, on another port)
        stray = subprocess.run(
            [*podman, "run", "-d", "--network", "host", "--pull", "never",
             "--label", f"{DEPLOYMENT_LABEL}={deployment_label(p.root, 'box')}",
             "--label", f"{DIGEST_LABEL}={v1}", "-e", f"PORT={free_port()}",
             "-e", "CANON_HOST=127.0.0.1", _image_id(p, v1)],
            capture_output=True, text=True, check=True).stdout.strip()
        status = p.canon("status", check=False)
        assert status.returncode == 1
        assert "outside canon's rollout (started by hand?)" in status.stdout, status.stdout
        p.canon("apply")
        assert stray not in {str(c["Id"]) for c in _containers(podman)}
        assert p.canon("status", check=False).returncode == 0
        assert httpx.get(f"{url}/provenance").json()["image"] == v4
        ledger = Ledger(p.root / ".canon" / "ledger.db")
        print("podman rollout durations (s):", [round(r["duration"], 2) for r in ledger.rollouts("box")])
        ledger.close()
    finally:
        p.canon("deploy", "--stop", check=False)
    assert _containers(podman) == [], "stop removes every container of the deployment"
    assert list((p.root / ".canon/deploy/.podman-logs").glob("canon-box-*.log"))


def test_podman_missing_is_a_clear_error(tmp_path: Path) -> None:
    p = make_project(tmp_path / "toy")
    with (p.root / "canon.yaml").open("a") as f:
        f.write("deployments:\n  box: {target: podman, artifact: model, port: 18080}\n")
    p.git("commit", "-qam", "deploy on podman")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git",):
        os.symlink(subprocess.check_output(["which", tool], text=True).strip(), bin_dir / tool)
    done = p.canon("deploy", "--status", check=False, env={"PATH": str(bin_dir)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "target: podman needs podman, which is not on PATH" in done.stderr
    assert "hint: install podman" in done.stderr


def test_podman_deployments_are_checked_like_local_ones(tmp_path: Path) -> None:
    p = make_project(tmp_path / "toy")
    with (p.root / "canon.yaml").open("a") as f:
        f.write(
            "deployments:\n"
            "  a: {target: local, artifact: model, port: 9000}\n"
            "  b: {target: podman, artifact: model, port: 9000}\n"
            "  c: {target: podman, artifact: model, host: localhost}\n"
            "  d: {target: podmen, artifact: model}\n"
        )
    done = p.canon("status", check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "deployments.b.port: port 9000 is already used by deployment a" in done.stderr
    assert 'deployments.c.host: "localhost" is not an IP address' in done.stderr
    assert "deployments.d.target: Input should be 'local', 'podman' or 'kubernetes'" in done.stderr
