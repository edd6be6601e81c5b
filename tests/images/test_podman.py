"""The model image runs in a real container runtime (podman + runc) and answers.

The image's base is a Debian bookworm made with ``debootstrap`` (cached under
/var/cache/canon-test-debootstrap, ~45 s once), pushed to the test registry by
skopeo and declared as ``from: 127.0.0.1:PORT/debian@sha256:...``: canon pulls
it (verified), stacks the runtime (canon's model server), repo and model layers
on it, pushes, and podman runs the image's own entrypoint: the HTTP model server,
on a free loopback port (``--network host``, never the default network).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import Registry, free_port, make_project, need

CACHE = Path(os.environ.get("CANON_TEST_DEBOOTSTRAP", "/var/cache/canon-test-debootstrap"))


def _rootfs() -> Path:
    rootfs = CACHE / "bookworm-python3"
    if (rootfs / "usr/bin/python3").exists():
        return rootfs
    if os.geteuid() != 0:
        pytest.fail("debootstrap needs root: run the tests as root (CI does)")
    need("debootstrap")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f"tmp-{os.getpid()}"
    subprocess.run(["debootstrap", "--variant=minbase", "--include=python3", "bookworm",
                    str(tmp), "http://deb.debian.org/debian"], check=True,
                   capture_output=True, timeout=900)
    tmp.rename(rootfs)
    return rootfs


def _layer(rootfs: Path) -> Path:
    """The rootfs as one tar+gzip layer (cached next to it)."""
    layer = CACHE / "bookworm-python3.tar.gz"
    if not layer.exists():
        tmp = layer.with_suffix(f".{os.getpid()}")
        subprocess.run(
            f"tar --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* "
            f"-C {rootfs} -cf - . | gzip -n -1 > {tmp}", shell=True, check=True)
        tmp.rename(layer)
    return layer


def _sha(path: Path, gunzip: bool = False) -> str:
    h = hashlib.sha256()
    if gunzip:
        proc = subprocess.Popen(["gzip", "-dc", str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            h.update(chunk)
        proc.wait()
    else:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


@pytest.fixture(scope="session")
def debian(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Debian+python3 image in the test registry; returns its pinned reference."""
    need("skopeo")
    layer = _layer(_rootfs())
    layout = tmp_path_factory.mktemp("debian-layout")
    blobs = layout / "blobs/sha256"
    blobs.mkdir(parents=True)
    digest, diff_id = _sha(layer), _sha(layer, gunzip=True)
    os.link(layer, blobs / digest[7:])
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2025-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2025-01-01T00:00:00Z", "created_by": "debootstrap"}],
    }, sort_keys=True).encode()
    (blobs / hashlib.sha256(config).hexdigest()).write_bytes(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest, "size": layer.stat().st_size}],
    }, sort_keys=True).encode()
    mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    (blobs / mdigest[7:]).write_bytes(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest,
         "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "bookworm"}}]}))
    subprocess.run([need("skopeo"), "copy", "--dest-tls-verify=false", "--preserve-digests",
                    f"oci:{layout}:bookworm", f"docker://{registry.host}/debian:bookworm"],
                   check=True, capture_output=True, timeout=300)
    return f"{registry.host}/debian@{mdigest}"


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[list[str]]:
    if os.geteuid() != 0:
        pytest.fail("the podman tests run as root: run the tests as root (CI does)")
    binary = need("podman")
    need("runc")
    conf = tmp_path / "containers"
    conf.mkdir()
    (conf / "containers.conf").write_text(textwrap.dedent("""\
        [containers]
        netns = "none"
        default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
        [engine]
        runtime = "runc"
        cgroup_manager = "cgroupfs"
        events_logger = "none"
        """))
    (conf / "storage.conf").write_text(textwrap.dedent(f"""\
        [storage]
        driver = "overlay"
        graphroot = "{tmp_path / 'graph'}"
        runroot = "{tmp_path / 'run'}"
        """))
    os.environ["CONTAINERS_CONF"] = str(conf / "containers.conf")
    os.environ["CONTAINERS_STORAGE_CONF"] = str(conf / "storage.conf")
    try:
        yield [binary]
    finally:
        subprocess.run([binary, "system", "reset", "--force"], capture_output=True, timeout=120)
        os.environ.pop("CONTAINERS_CONF", None)
        os.environ.pop("CONTAINERS_STORAGE_CONF", None)


@pytest.mark.slow
def test_model_image_serves_http_in_podman(tmp_path: Path, registry: Registry,
                                           debian: str, podman: list[str]) -> None:
    """The image's own entrypoint (canon's model server, baked into the base) answers
    over HTTP: nothing of canon or its dependencies comes from the project's lock."""
    p = make_project(tmp_path / "p", base_from=debian)
    p.canon("apply")
    p.canon("build")
    ns = f"{registry.host}/run"
    p.canon("push-image", "--registry", ns)
    ref = f"{ns}/model:{p.git('rev-parse', 'HEAD')[:12]}"
    subprocess.run([*podman, "pull", "--tls-verify=false", ref], check=True,
                   capture_output=True, timeout=300)
    port = free_port()
    name = f"canon-test-{port}"
    started = subprocess.run(
        [*podman, "run", "-d", "--name", name, "--network", "host",
         "-e", f"PORT={port}", "-e", "CANON_HOST=127.0.0.1",
         "-e", f"CANON_IMAGE_DIGEST={p.digest('model')}", ref],
        capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{url}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        logs = subprocess.run([*podman, "logs", name], capture_output=True, text=True).stderr
        assert ready is not None and ready.status_code == 200, logs
        assert ready.json()["state"] == "ready"
        single = httpx.post(f"{url}/predict", json={"inputs": {"x": [1, 2]}}, timeout=10)
        assert single.status_code == 200, single.text
        assert single.json() == {"predictions": {"score": 4.5}}
        batch = httpx.post(f"{url}/predict", json={"instances": [{"x": [2, 0]}, {"x": [0, 1]}]},
                           timeout=10)
        assert batch.json() == {"predictions": [{"score": 1.0}, {"score": 2.0}]}
        prov = httpx.get(f"{url}/provenance", timeout=10).json()
        assert prov["verified"] is True
        assert prov["image"] == p.digest("model")
        assert prov["provenance"]["base"]["digest"] == p.digest("base")
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        subprocess.run([*podman, "rm", "-f", "-t", "5", name], capture_output=True, timeout=60)
