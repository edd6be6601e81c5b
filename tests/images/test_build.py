"""canon build: base + model images, reproducible, secrets left out, --check."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from canon.stores.objects import ObjectStore
from canon.stores.oci.layout import ImageLayout
from canon.stores.oci.spec import parse_manifest

from .conftest import GIT_ENV, Project, canon_yaml, make_project


def layer_names(layout: ImageLayout, digest: str) -> list[str]:
    raw = gzip.decompress(layout.read_bytes(digest))  # type: ignore[arg-type]
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return tar.getnames()


def test_model_image_is_base_plus_one_layer_with_provenance(toy: Project) -> None:
    toy.canon("apply", "train")  # the stage only (a plain apply builds the images too)
    out = toy.canon("build").stdout
    assert "built       image.base" in out and "built       image.model" in out
    layout = ImageLayout(toy.root / ".canon/images")
    base = parse_manifest(layout.read_bytes(toy.digest("base")))  # type: ignore[arg-type]
    model = parse_manifest(layout.read_bytes(toy.digest("model")))  # type: ignore[arg-type]
    assert model.layers[:-1] == base.layers, "the model reuses the base's layers byte for byte"
    assert len(model.layers) == len(base.layers) + 1
    names = layer_names(layout, model.layers[-1].digest)
    assert "canon/repo/build/model.json" in names and "canon/provenance.json" in names
    assert not any(n.startswith("canon/repo/src") for n in names), "only the model in its layer"
    config = json.loads(layout.read_bytes(model.config.digest))
    assert len(config["history"]) == len(model.layers)
    assert len(config["rootfs"]["diff_ids"]) == len(model.layers)
    labels = config["config"]["Labels"]
    commit = toy.git("rev-parse", "HEAD")
    assert labels["org.opencontainers.image.revision"] == commit
    assert labels["org.opencontainers.image.base.digest"] == toy.digest("base")
    assert labels["org.opencontainers.image.created"] == "2025-01-02T03:04:05Z"
    assert model.annotations["org.opencontainers.image.base.digest"] == toy.digest("base")
    layer = gzip.decompress(layout.read_bytes(model.layers[-1].digest))  # type: ignore[arg-type]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        provenance = json.load(tar.extractfile("canon/provenance.json"))  # type: ignore[arg-type]
        info = tar.getmember("canon/repo/build/model.json")
    assert provenance["base"]["digest"] == toy.digest("base")
    assert provenance["commit"] == commit and "train" in provenance["stages"]
    assert set(provenance["files"]) == {"build/model.json"}
    assert (info.uid, info.gid, info.uname, info.gname, info.mode) == (0, 0, "", "", 0o644)
    assert info.mtime == 1735787045


def test_no_change_build_is_up_to_date_and_lock_commit_does_not_stale_it(toy: Project) -> None:
    toy.canon("apply")
    toy.canon("build")
    first = toy.digest("base")
    assert "up-to-date  image.base" in toy.canon("build").stdout
    toy.git("add", "canon.lock")
    toy.git("commit", "-qm", "record images")
    out = toy.canon("build").stdout
    assert "up-to-date  image.base" in out and "up-to-date  image.model" in out
    assert toy.digest("base") == first
    (toy.root / "src/toy/serve.py").write_text("def predict(r):\n    return r\n")
    toy.git("commit", "-qam", "new code")
    out = toy.canon("build").stdout
    assert "built       image.base" in out and "INPUTS_CHANGED" in out
    assert "UPSTREAM_CHANGED base" in out


def test_secrets_are_left_out_and_said_so(tmp_path: Path) -> None:
    p = make_project(tmp_path / "p", extra={
        ".env": "TOKEN=hunter2\n", "deploy/tls.pem": "-----BEGIN", "id_rsa": "k",
        "config/credentials.json": "{}", "notes.txt": "fine",
    })
    p.canon("apply", "train")
    done = p.canon("build", "base")
    assert "left out 4 file(s) that may hold secrets" in done.stderr
    layout = ImageLayout(p.root / ".canon/images")
    manifest = parse_manifest(layout.read_bytes(p.digest("base")))  # type: ignore[arg-type]
    names = layer_names(layout, manifest.layers[-1].digest)
    assert "canon/repo/notes.txt" in names
    assert not [n for n in names if n.endswith((".env", ".pem", "id_rsa", "credentials.json"))]
    assert not any(b"hunter2" in layout.read_bytes(l.digest) for l in manifest.layers)  # noqa: E741


def test_two_clones_at_different_paths_and_times_give_the_same_digests(tmp_path: Path) -> None:
    origin = make_project(tmp_path / "origin", requirements="six==1.16.0\n")
    digests = []
    for name in ("a/clone", "b/deeper/clone"):
        target = tmp_path / name
        target.parent.mkdir(parents=True)
        subprocess.run(["git", "clone", "-q", str(origin.root), str(target)], check=True,
                       env={**GIT_ENV, "PATH": "/usr/bin:/bin"})
        clone = Project(target)
        clone.canon("apply")
        clone.canon("build")
        digests.append((clone.digest("base"), clone.digest("model")))
        time.sleep(1.1)  # a different wall-clock second
    assert digests[0] == digests[1]
    clone.canon("build", "--check")


def test_a_later_commit_built_with_the_cached_environment_equals_a_fresh_clone(
    tmp_path: Path,
) -> None:
    """The environment layer is cached across commits: its bytes must not depend on the
    commit (its files' times are fixed), or a fresh clone of the later commit differs."""
    first = make_project(tmp_path / "first", requirements="six==1.16.0\n")
    first.canon("apply")
    first.canon("build")
    (first.root / "src/toy/extra.py").write_text("X = 1\n")
    later = {**GIT_ENV, "GIT_AUTHOR_DATE": "2025-06-07T08:09:10Z",
             "GIT_COMMITTER_DATE": "2025-06-07T08:09:10Z"}
    subprocess.run(["git", "add", "-A"], cwd=first.root, check=True)
    subprocess.run(["git", "commit", "-qm", "later"], cwd=first.root, check=True,
                   env={**os.environ, **later})
    first.canon("build")  # reuses the environment layer built at the first commit
    fresh = Project(tmp_path / "fresh")
    subprocess.run(["git", "clone", "-q", str(first.root), str(fresh.root)], check=True)
    fresh.canon("apply")
    fresh.canon("build")
    assert fresh.digest("base") == first.digest("base")
    assert "checked     image.base" in first.canon("build", "--check", "base").stdout


def test_check_rebuilds_what_the_lock_records_and_reports_a_different_digest(
    toy: Project,
) -> None:
    toy.canon("apply")
    toy.canon("build")
    assert "checked     image.model" in toy.canon("build", "--check").stdout
    # the workspace moved on (an edit not applied): the check rebuilds the recorded output
    (toy.root / "build/model.json").write_text('{"w": [1, 1]}')
    assert "checked     image.model" in toy.canon("build", "--check").stdout
    lock = toy.root / "canon.lock"
    recorded = lock.read_text()
    lock.write_text(recorded.replace(toy.digest("model"), "sha256:" + "0" * 64))
    done = toy.canon("build", "--check", check=False)
    assert done.returncode == 1
    assert "differs     image.model" in done.stdout
    assert "rebuilding gave different digests for: model" in done.stderr
    lock.write_text(recorded)
    import yaml

    out = yaml.safe_load(recorded)["profiles"]["default"]["stages"]["train"]["outs"]
    digest = out["build/model.json"]["digest"]
    ObjectStore(toy.root / ".canon/cache").drop([digest])
    done = toy.canon("build", "--check", check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"build/model.json as canon.lock records it ({digest})" in done.stderr
    assert "canon pull" in done.stderr


def test_unknown_artifact_and_uncommitted_project_are_clear_errors(tmp_path: Path) -> None:
    p = make_project(tmp_path / "p")
    done = p.canon("build", "modle", check=False)
    assert done.returncode == 2 and 'did you mean "model"?' in done.stderr
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "canon.yaml").write_text("project: x\nartifacts:\n  base: {kind: base}\n")
    subprocess.run(["git", "init", "-q", str(bare)], check=True)
    done = Project(bare).canon("build", check=False)
    assert done.returncode == 2 and "commit" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("level", [6])
def test_layers_are_gzip_n_compatible(toy: Project, level: int) -> None:
    toy.canon("apply")
    toy.canon("build", "base")
    layout = ImageLayout(toy.root / ".canon/images")
    manifest = parse_manifest(layout.read_bytes(toy.digest("base")))  # type: ignore[arg-type]
    blob = layout.read_bytes(manifest.layers[-1].digest)
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", "no name, mtime 0, like gzip -n"
    assert subprocess.run(["gzip", "-t"], input=blob).returncode == 0
    raw = subprocess.run(["gzip", "-dc"], input=blob, capture_output=True, check=True).stdout
    assert raw == gzip.decompress(blob)


def test_status_says_why_and_apply_builds_after_the_stages(toy: Project) -> None:
    done = toy.canon("status", check=False)
    assert done.returncode == 1
    assert "build   image.base\n          NEVER_BUILT" in done.stdout
    assert "build   image.model\n          UPSTREAM_CHANGED train\n          UPSTREAM_CHANGED base" in done.stdout
    applied = toy.canon("apply")
    assert "built image.model sha256:" in applied.stdout + applied.stderr
    assert toy.canon("status").stdout.startswith("Everything is up to date")
    (toy.root / "train.py").write_text(
        (toy.root / "train.py").read_text().replace("0.5, 2.0", "0.25, 2.0"))
    toy.git("commit", "-qam", "retrain")
    out = toy.canon("status", check=False).stdout
    assert "run     stage.train" in out and "UPSTREAM_CHANGED train" in out
    assert "build   image.base\n          INPUTS_CHANGED" in out
    before = toy.digest("model")
    toy.canon("apply")
    assert toy.digest("model") != before
    assert toy.canon("status").stdout.startswith("Everything is up to date")


def test_experiments_and_reproduce_apply_stages_only_no_image_no_rollout(
    tmp_path: Path,
) -> None:
    """A project declaring images and a local deployment: `canon exp run`, a queued
    experiment and `canon reproduce` run its stages and record them, but build no image
    (none in the shared layout, none announced) and roll nothing out (the deployment's
    port stays closed, no deploy state) -- an experiment must never replace the live
    model."""
    import socket

    from .conftest import free_port

    train = (
        "import json, pathlib, yaml\n"
        "w = yaml.safe_load(open('params.yaml'))['w']\n"
        "pathlib.Path('build').mkdir(exist_ok=True)\n"
        "pathlib.Path('build/model.json').write_text(json.dumps({'w': [w, 2.0]}))\n"
    )
    port = free_port()
    toy = make_project(tmp_path / "toy", extra={"train.py": train, "params.yaml": "w: 0.5\n"})
    (toy.root / "canon.yaml").write_text(
        canon_yaml().replace("    deps: [train.py]\n", "    deps: [train.py]\n    params: [w]\n")
        .replace("project: toy\n", "project: toy\nparams: params.yaml\n")
        + f"deployments:\n  local: {{target: local, artifact: model, port: {port}}}\n")
    toy.git("commit", "-qam", "params, deployment")
    toy.canon("apply", "train")  # the stage only: a lock to reproduce, nothing deployed
    toy.git("add", "canon.lock")
    toy.git("commit", "-qm", "lock")

    try:
        outputs = [
            toy.canon("exp", "run", "-S", "w=3.0", "--name", "w3").stdout,
            toy.canon("exp", "run", "--queue", "-S", "w=4.0", "--name", "w4").stdout,
            toy.canon("exp", "queue", "start", "-j", "1").stdout,
            toy.canon("reproduce", "HEAD").stdout,
        ]
        assert not list((toy.root / ".canon").glob("deploy/*/state.json"))
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))  # no model server was started
    finally:
        toy.canon("deploy", "--stop", check=False)  # had anything been rolled out
    for out in outputs:
        assert "image" not in out and "deploy" not in out, out
    import yaml

    for name, w in (("w3", 3.0), ("w4", 4.0)):
        lock = yaml.safe_load(toy.git("show", f"refs/canon/exps/{name}:canon.lock"))
        state = lock["profiles"]["default"]
        assert "train" in state["stages"], lock
        assert not state.get("images"), lock  # the base commit recorded none; none built
        assert toy.git("show", f"refs/canon/exps/{name}:params.yaml") == f"w: {w}"
    images = toy.root / ".canon" / "images"
    assert not images.exists() or not any(images.rglob("*.json")), list(images.rglob("*"))
