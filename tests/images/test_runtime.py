"""Every base image carries canon's model server (the runtime layer), so a model image's own
entrypoint serves HTTP with nothing from the project's lock."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
import time
from importlib import metadata
from pathlib import Path

import httpx
from packaging.requirements import Requirement

from canon.executors.deploy.rootfs import extract_image
from canon.executors.image.runtime import ENTRYPOINT, LAUNCHER_PATH, PREFIX
from canon.observe.runtime import PACKAGES, runtime
from canon.stores.oci.layout import ImageLayout
from canon.stores.oci.spec import parse_manifest

from .conftest import Project, free_port

REPO = Path(__file__).resolve().parents[2]


def _name(dist: str) -> str:
    return dist.lower().replace("-", "_")


def test_the_runtime_is_closed_under_dependencies_and_pinned_to_constraints() -> None:
    """What `canon serve` imports needs nothing outside PACKAGES (for the images' Python,
    3.11), and each is pinned to the version constraints.txt gives it."""
    wanted = {_name(p) for p in PACKAGES}
    env = {"python_version": "3.11", "python_full_version": "3.11.2", "extra": ""}
    for package in PACKAGES:
        for raw in metadata.requires(package) or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate(env):
                assert _name(req.name) in wanted, f"{package} needs {req.name}"
    pins = dict(
        line.split("==")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    pinned = {_name(k): v for k, v in pins.items()}
    assert runtime().pins == tuple((p, pinned[_name(p)]) for p in PACKAGES)
    assert runtime().missing == ()


def test_the_model_image_entrypoint_serves_http_without_the_host_python_packages(
    toy: Project, tmp_path: Path
) -> None:
    """Extract the model image and run its entrypoint with the system Python and no
    site-packages (-S): only the stdlib and what the image carries."""
    toy.canon("apply")
    layout = ImageLayout(toy.root / ".canon/images")
    digest = toy.digest("model")
    base = parse_manifest(layout.read_bytes(toy.digest("base")))  # type: ignore[arg-type]
    runtime_layer = gzip.decompress(layout.read_bytes(base.layers[-2].digest))  # type: ignore[arg-type]
    with tarfile.open(fileobj=io.BytesIO(runtime_layer)) as tar:
        names = tar.getnames()
        launcher = tar.getmember(LAUNCHER_PATH)
    assert f"{PREFIX}/canon/interfaces/serve/app.py" in names
    assert f"{PREFIX}/starlette/__init__.py" in names and f"{PREFIX}/uvicorn/main.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert launcher.mode == 0o755 and launcher.mtime == 1
    assert not any(n.startswith(f"{PREFIX}/pydantic") for n in names)

    rootfs = extract_image(layout, digest, tmp_path / "images")
    config = json.loads((rootfs.parent / "image-config.json").read_text())["config"]
    assert config["Entrypoint"] == list(ENTRYPOINT)
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PYTHONPATH"].split(":")[-1] == f"/{PREFIX}"
    paths = ":".join(f"{rootfs}{p}" for p in env["PYTHONPATH"].split(":"))
    port = free_port()
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-S", f"{rootfs}{ENTRYPOINT[1]}"],
        env={
            "PYTHONPATH": paths,
            "PATH": "/usr/bin:/bin",
            "PORT": str(port),
            "CANON_HOST": "127.0.0.1",
            "CANON_IMAGE_DIGEST": digest,
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        cwd=rootfs / "canon/repo",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        ready = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"{url}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert ready is not None and ready.status_code == 200, proc.poll()
        answer = httpx.post(f"{url}/predict", json={"inputs": {"x": [1, 2]}}, timeout=10)
        assert answer.json() == {"predictions": {"score": 4.5}}
        provenance = httpx.get(f"{url}/provenance", timeout=10).json()
        assert (provenance["image"], provenance["verified"]) == (digest, True)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=15)[0].decode(errors="replace")
    assert "Traceback" not in out, out
