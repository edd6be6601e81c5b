"""Hostile archives: every one is refused before a byte is written (RELIABILITY.md 3)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from canon.errors import UnsafeArchiveError
from canon.stores.oci.unpack import Limits, extract, plan_extraction


def make_tar(path: Path, entries: list[tuple[str, str, object]], gz: bool = False) -> Path:
    """entries: (name, kind, payload) with kind file/dir/sym/link/fifo/chr."""
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            data = b""
            if kind == "file":
                data = payload if isinstance(payload, bytes) else str(payload).encode()
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, str(payload)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return path


def test_a_good_archive_extracts(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "ok.tar.gz", [
        ("app/", "dir", None), ("app/main.py", "file", "print(1)"),
        ("app/link", "sym", "main.py"), ("app/hard", "link", "app/main.py"),
    ], gz=True)
    out = tmp_path / "out"
    extract(archive, out)
    assert (out / "app/main.py").read_text() == "print(1)"
    assert (out / "app/link").is_symlink() and (out / "app/hard").read_text() == "print(1)"


HOSTILE = {
    "absolute": ([("/etc/passwd", "file", "x")], "absolute path"),
    "dotdot": ([("a/../../evil", "file", "x")], r"contains '\.\.'"),
    "dotdot-leading": ([("../evil", "file", "x")], r"contains '\.\.'"),
    "symlink-out": ([("a", "sym", "../../etc")], "symlink leaving the root"),
    "symlink-absolute": ([("a", "sym", "/etc")], "absolute or empty"),
    "through-symlink": ([("a", "sym", "b"), ("b/", "dir", None), ("a/x", "file", "x")],
                        "passes through the symlink"),
    "hardlink-out": ([("h", "link", "/etc/shadow")], "absolute path"),
    "hardlink-missing": ([("h", "link", "nothere")], "not an earlier file"),
    "fifo": ([("p", "fifo", None)], "device, FIFO"),
    "device": ([("null", "chr", None)], "device, FIFO"),
    "duplicate": ([("f", "file", "1"), ("f", "file", "2")], "appears twice"),
    "case": ([("Readme", "file", "1"), ("README", "file", "2")], "case-insensitive"),
    "backslash": ([("..\\evil", "file", "1")], "backslash"),
    "whiteout": ([(".wh.etc", "file", "")], "whiteout"),
    "under-file": ([("f", "file", "1"), ("f/g", "file", "2")], "under the file"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_before_writing(tmp_path: Path, case: str) -> None:
    entries, message = HOSTILE[case]
    archive = make_tar(tmp_path / "bad.tar", [("ok-first.txt", "file", "fine"), *entries])
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=message):
        extract(archive, out)
    assert not out.exists(), "nothing may be written, not even the good first entry"
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tar"]


def test_caps_on_entries_and_sizes(tmp_path: Path) -> None:
    many = make_tar(tmp_path / "many.tar", [(f"f{i}", "file", "x") for i in range(20)])
    with pytest.raises(UnsafeArchiveError, match="20 entries"):
        extract(many, tmp_path / "o1", Limits(entries=10))
    big = make_tar(tmp_path / "big.tar", [("f", "file", b"x" * 5000)])
    with pytest.raises(UnsafeArchiveError, match="the cap is 1000"):
        extract(big, tmp_path / "o2", Limits(member=1000))
    with pytest.raises(UnsafeArchiveError, match="more than 4000 bytes"):
        extract(big, tmp_path / "o3", Limits(total=4000))


def test_target_must_be_new_or_empty(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "ok.tar", [("f", "file", "x")])
    target = tmp_path / "t"
    target.mkdir()
    (target / "existing").write_text("keep")
    with pytest.raises(UnsafeArchiveError, match="not an empty directory"):
        extract(archive, target)
    assert (target / "existing").read_text() == "keep"


def test_truncated_archive_is_a_typed_error(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "ok.tar.gz", [("f", "file", os.urandom(100000))], gz=True)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[:5000])
    with pytest.raises(UnsafeArchiveError, match="cannot read archive"):
        extract(cut, tmp_path / "o")


def test_names_with_nul_are_refused() -> None:
    # tarfile cuts names at NUL when reading; a crafted TarInfo still must not pass
    with pytest.raises(UnsafeArchiveError, match="NUL"):
        plan_extraction([tarfile.TarInfo("a\x00b")])
