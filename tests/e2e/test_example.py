"""The bundled example, end to end, as the README's first command (`make demo`) runs it:
init (which commits), apply (stages, then the base and model images), images, status.

The base image's environment layer is the example's real requirements.lock installed
for linux/amd64 by pip, from the package index pip is configured with, as the image
tests install theirs (tests/images: `six==1.16.0`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.e2e.conftest import CANON


def canon(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [CANON, *args], cwd=root, capture_output=True, text=True, env=env, timeout=600
    )


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def layer_files(root: Path, digest: str) -> dict[str, int]:
    """A layer's regular files and their sizes, read from the image layout."""
    blob = root / ".canon/images/blobs/sha256" / digest.removeprefix("sha256:")
    with tarfile.open(blob, "r:gz") as tar:
        return {m.name: m.size for m in tar.getmembers() if m.isfile()}


@pytest.mark.slow
def test_weather_example_runs_end_to_end_builds_its_images_and_is_clean(
    tmp_path: Path,
) -> None:
    root = tmp_path / "weather"
    init = canon(tmp_path, "init", "weather", "--example", "weather")
    assert init.returncode == 0, init.stderr
    assert "Committed them in a new Git repository" in init.stdout
    head = git(root, "rev-parse", "HEAD")
    assert git(root, "status", "--porcelain") == ""  # everything init wrote is committed
    status = canon(root, "status")
    assert status.returncode == 1 and "DATA_NEW" in status.stdout
    assert "image.base" in status.stdout and "NEVER_BUILT" in status.stdout

    applied = canon(root, "apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "built image.base" in applied.stdout and "built image.model" in applied.stdout
    metrics = json.loads((root / "build/metrics.json").read_text())
    assert metrics["auc"] > 0.7
    clean = canon(root, "status")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    shown = canon(root, "images")
    assert shown.returncode == 0 and "canon: add build/model.json" in shown.stdout
    images = {i["name"]: i for i in json.loads(canon(root, "images", "--json").stdout)}
    assert set(images) == {"base", "model"}
    base, model = images["base"], images["model"]
    assert base["commit"] == model["commit"] == head and model["base"] == base["digest"]
    assert base["layers"][0]["created_by"].startswith("canon: pip install -r requirements.lock")
    assert base["layers"][0]["size"] > 10 * 2**20  # numpy, pandas, scikit-learn, scipy
    # the model image is the base's layers, byte for byte, plus ONE layer: the model
    *shared, own = model["layers"]
    assert [x["digest"] for x in shared] == [x["digest"] for x in base["layers"]]
    assert all(x["shared"] for x in shared) and not own["shared"]
    files = layer_files(root, own["digest"])
    model_size = (root / "build/model.json").stat().st_size
    in_repo = {name: n for name, n in files.items() if name.startswith("canon/repo/")}
    assert in_repo == {"canon/repo/build/model.json": model_size}  # the model file, whole
    assert "canon/provenance.json" in files and not any(n.startswith("canon/env/") for n in files)
    assert own["size"] <= sum(files.values())  # the model files, compressed: nothing else
    assert model["size"] - base["size"] < sum(files.values()) + 4096  # + manifest and config

    # a hyperparameter change re-runs train and evaluate only, and says why; the model
    # image is rebuilt on the same base
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("C: 1.0", "C: 0.25"))
    status = canon(root, "status")
    assert "PARAM_CHANGED train.C 1.0 -> 0.25" in status.stdout
    assert "stage.features" not in status.stdout and "image.base" not in status.stdout
    assert "image.model" in status.stdout
    assert canon(root, "apply").returncode == 0
    assert canon(root, "status").returncode == 0
    again = {i["name"]: i for i in json.loads(canon(root, "images", "--json").stdout)}
    assert again["base"]["digest"] == base["digest"]
    assert again["model"]["digest"] != model["digest"]

    # the example reproduces bit for bit in its declared environment, rebuilt from its
    # requirements.lock alone (a lock missing a package the stages import would fail)
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "C = 0.25")
    repro = canon(root, "reproduce", "HEAD", "--check", "--json")
    assert repro.returncode == 0, repro.stdout[-2000:] + repro.stderr
    report = json.loads(repro.stdout.splitlines()[-1])["report"]
    assert {s["stage"]: s["verdict"] for s in report["stages"]} == {
        "features": "identical", "train": "identical", "evaluate": "identical"}
    used = report["environment"]
    assert used["rebuilt"] is True and used["problems"] == []
    pinned = [p for p in (root / "requirements.lock").read_text().split() if "==" in p]
    assert sorted(p.lower().replace("-", "_") for p in used["packages"]) == sorted(
        p.lower().replace("-", "_") for p in pinned)
