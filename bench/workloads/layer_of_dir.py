"""Write DIR as one canon image layer (deterministic tar+gzip) to OUT; print its digest.

The canon side of W6's "layer creation vs tar | gzip -n" row: the same layer
writer `canon build` uses (sorted entries, fixed mtime, uid/gid 0, gzip -n header).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from canon.executors.image.tarball import Entry, build_layer
from canon.stores.oci.layout import ImageLayout


def entries(root: Path) -> list[Entry]:
    found: list[Entry] = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                found.append(Entry(rel, "symlink", target=os.readlink(full)))
            else:
                size = os.path.getsize(full)
                found.append(Entry(rel, "file", os.access(full, os.X_OK),
                                   lambda p=full: Path(p).read_bytes(), size))
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("out")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="layer-", dir=os.path.dirname(os.path.abspath(a.out))))
    try:
        layer = build_layer(ImageLayout(tmp), entries(Path(a.dir)), 1_700_000_000)
        os.replace(tmp / "blobs/sha256" / layer.descriptor.digest[7:], a.out)
        print(layer.descriptor.digest, layer.descriptor.size, layer.entries)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
