"""A model image from the OCI layout, extracted for the local target.

Every blob is verified against its digest and size before it is read; every layer goes
through ``stores.oci.unpack`` (checked entry by entry before a byte is written) into its
own directory, and the layers are then merged in order into ``rootfs/`` (hard links, a
later layer's file wins; a later layer's file replaces a directory and a directory a file
or link, as overlayfs does). A layer's OCI whiteouts are applied to the layers below it
first: ``a/.wh.b`` removes ``a/b``, ``a/.wh..wh..opq`` empties ``a``. A whiteout whose
path passes through a symlink of a lower layer is refused (it could reach outside).
The image config is saved as ``image-config.json`` next to the rootfs, where the model
server reads its ``Env`` (PYTHONPATH). The result is published by renaming a finished
staging directory, so a crash never leaves a half-extracted image under its final name.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from canon.digest import Digest
from canon.errors import ImageError, UnsafeArchiveError
from canon.stores.oci import spec as oci
from canon.stores.oci.layout import ImageLayout
from canon.stores.oci.unpack import Planned, extract


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
            planned = extract(layout.blob_path(layer.digest), unpacked, whiteouts=True)
            merge_layer(unpacked, planned, rootfs)
            shutil.rmtree(unpacked)
        (staging / "image-config.json").write_bytes(config)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final / "rootfs"


def merge_layer(layer: Path, planned: list[Planned], rootfs: Path) -> None:
    """Overlay the extracted ``layer`` on ``rootfs`` (the layers below it, merged):
    its whiteouts first, then its entries (directories merge, anything else replaces)."""
    for entry in planned:
        if entry.kind in ("whiteout", "opaque"):
            _hide(rootfs, entry)
    for dirpath, dirnames, filenames in os.walk(layer):
        rel = Path(dirpath).relative_to(layer)
        target_dir = rootfs / rel
        if target_dir.is_symlink() or (target_dir.exists() and not target_dir.is_dir()):
            target_dir.unlink()  # a directory replaces a lower file or link
        target_dir.mkdir(exist_ok=True)
        for name in [*filenames, *(d for d in dirnames if (Path(dirpath) / d).is_symlink())]:
            src, dst = Path(dirpath) / name, target_dir / name
            _remove(dst)
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            else:
                os.link(src, dst)


def _hide(rootfs: Path, entry: Planned) -> None:
    """Apply one whiteout to ``rootfs``; nothing to hide is fine, a symlink on the way is not."""
    path = rootfs
    for part in entry.name.split("/"):
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return  # nothing below has it
        if stat.S_ISLNK(st.st_mode) and path != rootfs / entry.name:
            raise UnsafeArchiveError(
                f"refusing layer: whiteout of {entry.name!r} passes through the symlink "
                f"{path.relative_to(rootfs)} of a lower layer",
                hint="nothing outside the image was touched; the image is hostile or broken",
            )
    if entry.kind == "whiteout":
        _remove(path)
    elif stat.S_ISDIR(os.lstat(path).st_mode):
        for child in os.listdir(path):
            _remove(path / child)


def _remove(path: Path) -> None:
    """Remove whatever is at ``path`` (a real directory with all it holds; a link, not
    what it points to)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()
