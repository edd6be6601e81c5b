"""A model image from the OCI layout, extracted for the local target.

Every blob is verified against its digest and size before it is read; every layer goes
through ``stores.oci.unpack`` (checked entry by entry before a byte is written) into its
own directory, and the layers are then merged in order into ``rootfs/`` (hard links, a
later layer's file wins). The image config is saved as ``image-config.json`` next to the
rootfs, where the model server reads its ``Env`` (PYTHONPATH). The result is published by
renaming a finished staging directory, so a crash never leaves a half-extracted image
under its final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from canon.digest import Digest
from canon.errors import ImageError
from canon.stores.oci import spec as oci
from canon.stores.oci.layout import ImageLayout
from canon.stores.oci.unpack import extract


def image_dir(base: Path, digest: str) -> Path:
    return base / digest.replace(":", "-")


def extract_image(layout: ImageLayout, digest: str, base: Path) -> Path:
    """The rootfs of image ``digest`` under ``base`` (extracted once, then reused)."""
    final = image_dir(base, digest)
    if (final / "rootfs").is_dir() and (final / "image-config.json").is_file():
        return final / "rootfs"
    if not layout.has_blob(Digest(digest)):
        raise ImageError(
            f"image {digest[:19]}… is not in {layout.root}",
            hint="build it with `canon build` or fetch it with `canon pull-image`",
        )
    manifest = oci.parse_manifest(layout.read_bytes(Digest(digest)))
    config = layout.read_bytes(manifest.config.digest, manifest.config.size)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".image-", dir=base))
    try:
        rootfs = staging / "rootfs"
        rootfs.mkdir()
        for i, layer in enumerate(manifest.layers):
            layout.verify(layer.digest, layer.size)
            unpacked = staging / f"layer-{i}"
            extract(layout.blob_path(layer.digest), unpacked)
            _merge(unpacked, rootfs)
            shutil.rmtree(unpacked)
        (staging / "image-config.json").write_bytes(config)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final / "rootfs"


def _merge(layer: Path, rootfs: Path) -> None:
    """Overlay ``layer`` on ``rootfs``: directories merge, files and links replace."""
    for dirpath, dirnames, filenames in os.walk(layer):
        rel = Path(dirpath).relative_to(layer)
        target_dir = rootfs / rel
        target_dir.mkdir(exist_ok=True)
        for name in [*filenames, *(d for d in dirnames if (Path(dirpath) / d).is_symlink())]:
            src, dst = Path(dirpath) / name, target_dir / name
            if dst.is_symlink() or dst.is_file():
                dst.unlink()
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            else:
                os.link(src, dst)
