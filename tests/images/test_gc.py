"""canon gc collects .canon/images blobs that no lock (any commit, experiment refs, the
working lock) and no tag reaches; --dry-run, a grace period, nothing deleted on doubt."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from canon.stores.oci.layout import ImageLayout
from canon.stores.oci.spec import MANIFEST, Descriptor, index_bytes, parse_manifest

from .conftest import Project

TRAIN = '''\
import json, pathlib
pathlib.Path("build").mkdir(exist_ok=True)
pathlib.Path("build/model.json").write_text(json.dumps({{"w": [{w}, 1.0]}}))
'''


def retrain(p: Project, w: float) -> str:
    """A new model (an uncommitted change to train.py) and its image; its digest."""
    (p.root / "train.py").write_text(TRAIN.format(w=w))
    p.canon("apply")
    return p.digest("model")


def blobs_of(layout: ImageLayout, digest: str) -> set[str]:
    manifest = parse_manifest(layout.read_bytes(digest))  # type: ignore[arg-type]
    return {digest, manifest.config.digest, *(d.digest for d in manifest.layers)}


def gc(p: Project, *args: str) -> dict[str, object]:
    out = json.loads(p.canon("gc", "--json", *args).stdout)
    images = out["images"]
    assert isinstance(images, dict)
    return images


def intact(layout: ImageLayout, digest: str) -> None:
    manifest = parse_manifest(layout.read_bytes(digest))  # type: ignore[arg-type]
    for d in (manifest.config, *manifest.layers):
        layout.verify(d.digest, d.size)


def test_gc_removes_only_images_nothing_references(toy: Project) -> None:
    layout = ImageLayout(toy.root / ".canon/images")
    committed = retrain(toy, 0.1)
    base = toy.digest("base")
    toy.git("add", "-A")
    toy.git("commit", "-qm", "model 1 and its lock")
    in_exp = retrain(toy, 0.2)  # recorded only in an experiment-like ref
    toy.git("add", "canon.lock")
    tree = toy.git("write-tree")
    toy.git("update-ref", "refs/canon/exps/e1", toy.git("commit-tree", tree, "-p", "HEAD",
                                                        "-m", "exp"))
    toy.git("reset", "-q")
    pulled = retrain(toy, 0.3)  # then tagged as if `canon pull-image` had fetched it
    garbage = retrain(toy, 0.4)  # superseded by the next build, in no lock and no tag
    working = retrain(toy, 0.5)
    layout.tag("pulled", Descriptor(MANIFEST, pulled, len(layout.read_bytes(pulled))))  # type: ignore[arg-type]
    assert len({committed, in_exp, pulled, garbage, working}) == 5
    doomed = blobs_of(layout, garbage) - blobs_of(layout, working) - blobs_of(layout, base)
    assert len(doomed) == 3  # manifest, config, model layer: the base's layers are shared
    tmp_old = layout.blobs / ".tmp-interrupted"
    tmp_old.write_bytes(b"half a layer")
    os.utime(tmp_old, (time.time() - 7200, time.time() - 7200))
    tmp_new = layout.blobs / ".tmp-writing"
    tmp_new.write_bytes(b"being written")
    before = sorted(os.listdir(layout.blobs))

    default = gc(toy, "--dry-run")  # default grace period: everything is younger than 1 h
    assert default["removed"] == [] and default["young"] == 3
    dry = gc(toy, "--dry-run", "--min-age", "0")
    assert sorted(dry["removed"]) == sorted(doomed) and dry["temp"] == 1  # type: ignore[arg-type]
    assert sorted(os.listdir(layout.blobs)) == before, "--dry-run deletes nothing"

    done = toy.canon("gc", "--min-age", "0").stdout
    assert "removed 3 image blob(s)" in done and "1 temp file(s)" in done
    left = set(os.listdir(layout.blobs))
    assert not {d[7:] for d in doomed} & left
    assert ".tmp-writing" in left and ".tmp-interrupted" not in left
    for digest in (committed, in_exp, pulled, working, base):
        intact(layout, digest)
    assert "up-to-date  image.model" in toy.canon("build").stdout
    again = gc(toy, "--min-age", "0")
    assert again["removed"] == [] and again["kept"] == len(left) - 1  # all but the temp file


def test_a_corrupt_manifest_stops_gc_before_it_deletes_anything(toy: Project) -> None:
    layout = ImageLayout(toy.root / ".canon/images")
    retrain(toy, 0.1)
    garbage = retrain(toy, 0.2)
    retrain(toy, 0.3)
    base = Path(layout.blob_path(toy.digest("base")))  # type: ignore[arg-type]
    base.chmod(0o644)
    base.write_bytes(base.read_bytes().replace(b"schemaVersion", b"schemaversion"))
    before = sorted(os.listdir(layout.blobs))
    done = toy.canon("gc", "--min-age", "0", check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "gc stopped before deleting anything" in done.stderr and "corrupt" in done.stderr
    assert sorted(os.listdir(layout.blobs)) == before
    assert layout.has_blob(garbage)  # type: ignore[arg-type]


def test_an_index_listing_a_kept_manifest_is_kept(toy: Project) -> None:
    """A base pinned by a multi-platform index resolves through it: it stays, so a
    rebuild needs no registry; an index listing only garbage goes."""
    layout = ImageLayout(toy.root / ".canon/images")
    retrain(toy, 0.1)
    base = toy.digest("base")
    size = len(layout.read_bytes(base))  # type: ignore[arg-type]
    platform = {"os": "linux", "architecture": "amd64"}
    listing = layout.put_bytes(index_bytes([Descriptor(MANIFEST, base, size, {}, platform)]))  # type: ignore[arg-type]
    stale = layout.put_bytes(
        index_bytes([Descriptor(MANIFEST, "sha256:" + "1" * 64, 10, {}, platform)])  # type: ignore[arg-type]
    )
    done = gc(toy, "--min-age", "0")
    assert done["removed"] == [stale]
    assert layout.has_blob(listing) and not layout.has_blob(stale)


def test_scratch_layouts_of_killed_checks_go_after_an_hour(toy: Project) -> None:
    old, running = toy.root / ".canon/check-killed", toy.root / ".canon/check-running"
    for d in (old, running):
        (d / "blobs/sha256").mkdir(parents=True)
        (d / "blobs/sha256/x").write_bytes(b"a layer being rebuilt")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert gc(toy, "--dry-run")["temp"] == 1 and old.exists()
    assert gc(toy)["temp"] == 1
    assert not old.exists() and running.exists()
