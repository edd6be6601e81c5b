"""Layers merged the way a container runtime does: OCI whiteouts hide what lower
layers put there, type changes replace, and no whiteout reaches outside the rootfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from canon.errors import UnsafeArchiveError
from canon.executors.deploy.rootfs import merge_layer
from canon.stores.oci.unpack import extract
from tests.stores.oci.test_unpack import make_tar

Entries = list[tuple[str, str, object]]


def merged(tmp_path: Path, *layers: Entries) -> Path:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    for i, entries in enumerate(layers):
        archive = make_tar(tmp_path / f"layer{i}.tar", entries)
        unpacked = tmp_path / f"layer{i}"
        merge_layer(unpacked, extract(archive, unpacked, whiteouts=True), rootfs)
    return rootfs


def tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + str(p.readlink())
        elif p.is_dir():
            out[rel] = "/"
        else:
            out[rel] = p.read_text()
    return out


def test_whiteouts_and_opaque_directories_hide_lower_layers(tmp_path: Path) -> None:
    rootfs = merged(
        tmp_path,
        [("etc/a", "file", "a"), ("etc/b", "file", "b"), ("cache/x", "file", "x"),
         ("cache/sub/y", "file", "y"), ("old", "dir", None), ("old/z", "file", "z"),
         ("lib", "sym", "etc"), ("keep", "file", "k")],
        [("etc/.wh.a", "file", ""), ("cache/.wh..wh..opq", "file", ""),
         ("cache/new", "file", "new"), (".wh.old", "file", ""), (".wh.lib", "file", ""),
         ("etc/b", "file", "b2"), ("keep/", "dir", None), ("keep/inside", "file", "i")],
    )
    assert tree(rootfs) == {
        "cache": "/", "cache/new": "new",  # opaque: the lower x and sub/ are gone
        "etc": "/", "etc/b": "b2",  # a whited out, b replaced
        "keep": "/", "keep/inside": "i",  # a directory replaced the lower file
    }
    assert (tmp_path / "layer0" / "etc" / "a").read_text() == "a"  # lower layer untouched


def test_a_whiteout_in_a_layer_hides_only_lower_layers(tmp_path: Path) -> None:
    rootfs = merged(
        tmp_path,
        [("a", "file", "lower")],
        [(".wh.a", "file", ""), ("a", "file", "same layer")],
    )
    assert tree(rootfs) == {"a": "same layer"}


def test_a_whiteout_through_a_lower_symlink_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "escape").symlink_to(outside)  # as if a lower layer had left it
    archive = make_tar(tmp_path / "evil.tar", [("escape/.wh.precious", "file", "")])
    planned = extract(archive, tmp_path / "evil", whiteouts=True)
    with pytest.raises(UnsafeArchiveError, match="passes through the symlink escape"):
        merge_layer(tmp_path / "evil", planned, rootfs)
    assert (outside / "precious").read_text() == "keep me"


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ([(".wh..wh..opq", "file", "")], "makes the root itself opaque"),
        ([("d/.wh...", "file", "")], "whiteout of nothing nameable"),
        ([("d/.wh.x", "file", "not empty")], "not an empty regular file"),
        ([("d/.wh.x", "dir", None)], "not an empty regular file"),
        ([("d/.wh.x", "file", ""), ("d/.wh.x", "file", "")], "appears twice"),
        ([("l", "sym", "d"), ("l/.wh.x", "file", "")], "passes through the symlink 'l'"),
    ],
)
def test_bad_whiteouts_are_refused_before_anything_is_written(
    tmp_path: Path, entries: Entries, why: str
) -> None:
    archive = make_tar(tmp_path / "bad.tar", entries)
    with pytest.raises(UnsafeArchiveError, match=why):
        extract(archive, tmp_path / "out", whiteouts=True)
    assert not (tmp_path / "out").exists()


def test_without_merging_a_whiteout_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "w.tar", [("d/.wh.x", "file", "")])
    with pytest.raises(UnsafeArchiveError, match="is an OCI whiteout"):
        extract(archive, tmp_path / "out")
