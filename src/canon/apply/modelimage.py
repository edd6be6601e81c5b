"""A back-test's model from its model image: the tier between the cache and a rebuild.

A back-test restores the model stage of an earlier commit REV from the shared
object cache (the digests REV's ``canon.lock`` records). When the cache lacks
them (collected, never pulled, another clone), the stage would re-run: the
model is rebuilt from REV's commit. But REV's lock may record a model image
(``kind: model``) that still holds those files: its one top layer
(``executors/image/builder.py`` ``build_model``) carries ``canon/repo/<p>``
for each ``add:`` path ``p``. ``prime_from_image`` takes them out of it:

1. the image's manifest is read from the local layout ``.canon/images``
   (verified against its digest), and its top layer is verified and unpacked
   with the safe extractor (``stores/oci/unpack.py``) into a temp directory
   under the cache's ``tmp/``;
2. each recorded *file* output of the model stage found there is hashed, and
   put into the object cache only when it hashes to the digest the lock
   records — never on trust: a mismatch is skipped, and the stage is rebuilt;
3. the back-test's ``canon apply`` then finds every output in the cache and
   restores the stage instead of running it.

A model image is an image whose base is another image recorded in the same
lock (a model is built on the project's ``kind: base`` artifact; a base on a
pinned ``from:`` image, which the lock does not record as an artifact): base
images hold the whole repository and are not unpacked here. A directory output
is not taken from an image (an image adds files, not trees): its stage is
rebuilt. An image that is not in the local layout (pushed, then collected
locally) is not fetched: the stage is rebuilt, and ``Primed.note`` says why and
how to pull it back.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canon.digest import Digest, hash_file
from canon.errors import CanonError
from canon.observe.root import STATE_DIR
from canon.stores.objects import ObjectStore
from canon.stores.oci import spec as oci
from canon.stores.oci.layout import ImageLayout
from canon.stores.oci.unpack import extract
from canon.stores.records import Content, ImageRecord, ProfileState

FROM_IMAGE = "restored from its model image"  # + " sha256:<digest of the manifest>"
IMAGES = "images"  # under .canon: the OCI layout (apply.images.IMAGES_DIR)


def from_image(digest: str) -> str:
    return f"{FROM_IMAGE} {digest}"


@dataclass(frozen=True)
class Primed:
    """What ``prime_from_image`` did: the image the model files came from, or why a
    recorded model image could not give them (the model stage is then rebuilt)."""

    image: str | None = None  # the model image's manifest digest
    note: str = ""

    def info(self) -> dict[str, Any]:
        """For the experiment's ``backtest`` provenance (empty when nothing to say)."""
        out: dict[str, Any] = {}
        if self.image:
            out["model_image"] = self.image
        if self.note:
            out["model_image_note"] = self.note
        return out


def model_images(state: ProfileState) -> list[tuple[str, ImageRecord]]:
    """The lock's model images: those built on another image the lock records."""
    recorded = {str(r.digest) for r in state.images.values()}
    return [
        (name, r)
        for name, r in sorted(state.images.items())
        if r.base is not None and str(r.base) in recorded
    ]


def prime_from_image(root: Path, state: ProfileState, model_stage: str) -> Primed:
    """Put the outputs of ``model_stage`` that the cache lacks into it from the model
    image ``state`` records, each only if it hashes to the recorded digest."""
    record = state.stages.get(model_stage)
    images = model_images(state)
    if record is None or not record.outs or not images:
        return Primed()  # nothing recorded to look for (Backtest.obtained says "no image")
    store = ObjectStore(root / STATE_DIR / "cache")
    missing = {p: c for p, c in record.outs.items() if not store.has(c.digest)}
    if not missing:
        return Primed()  # the cache has the model: restored from it
    dirs = sorted(p for p, c in missing.items() if c.is_dir)
    if dirs:
        # an image's added paths are files; a directory output is rebuilt (see the doc)
        return Primed(note=f"{dirs[0]} is a directory: a model image holds files only")
    layout = ImageLayout(root / STATE_DIR / IMAGES)
    used: list[str] = []
    notes: list[str] = []
    for name, image in images:
        try:
            found = _take(layout, image.digest, missing, store)
        except CanonError as exc:
            notes.append(_unusable(layout, name, image, exc))
            continue
        if found:
            used.append(str(image.digest))
            missing = {p: c for p, c in missing.items() if p not in found}
        if not missing:
            return Primed(image=", ".join(used))
    lacking = ", ".join(sorted(missing))
    shown = ", ".join(f"{n} {str(r.digest)[:19]}…" for n, r in images)
    return Primed(note="; ".join(notes) or f"image {shown} holds no {lacking} as recorded")


def _take(
    layout: ImageLayout, digest: Digest, wanted: dict[str, Content], store: ObjectStore
) -> set[str]:
    """The paths of ``wanted`` that image ``digest``'s top layer holds with the recorded
    digests, now in ``store``."""
    from canon.executors.image.builder import REPO_DIR

    manifest = oci.parse_manifest(layout.read_bytes(digest), f"manifest {digest}")
    if not manifest.layers:
        return set()
    top = manifest.layers[-1]  # the model's own layer: the added files + provenance
    layout.verify(top.digest, top.size)
    store.tmp.mkdir(parents=True, exist_ok=True)
    # under the cache's tmp/: a crash's leftover is pruned with the other temp files
    scratch = Path(tempfile.mkdtemp(prefix="model-image-", dir=store.tmp))
    try:
        unpacked = scratch / "layer"
        extract(layout.blob_path(top.digest), unpacked)
        found: set[str] = set()
        for path, content in wanted.items():
            file = unpacked / REPO_DIR / path
            if file.is_symlink() or not file.is_file():
                continue
            if hash_file(file) != content.digest:
                continue  # not the bytes the lock records: never trusted
            store.add_file(file, content.digest)
            found.add(path)
        return found
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _unusable(layout: ImageLayout, name: str, image: ImageRecord, exc: CanonError) -> str:
    digest = str(image.digest)
    if not layout.has_blob(image.digest):
        where = next(iter(sorted(image.pushed)), None)
        how = (
            f"canon pull-image {where}@{digest} brings it back"
            if where
            else "it was never pushed; `canon build` at its commit rebuilds it"
        )
        return f"image {name} {digest[:19]}… not in {STATE_DIR}/{IMAGES} ({how})"
    return f"image {name} {digest[:19]}… unusable: {exc.message}"
