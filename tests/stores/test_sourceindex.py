"""Source indexes: one spelling per listing, drift by path/size/version, untrusted parsing."""

from __future__ import annotations

import pytest

from canon.errors import StateError
from canon.stores.sourceindex import Drift, IndexEntry, SourceIndex


def idx(*entries: tuple[str, int, str]) -> SourceIndex:
    return SourceIndex.build(IndexEntry(*e) for e in entries)


def test_same_listing_same_bytes_whatever_the_order() -> None:
    a = idx(("b.csv", 2, '"etag-b"'), ("a.csv", 1, "etag a"))
    b = idx(("a.csv", 1, "etag a"), ("b.csv", 2, "etag-b"))
    assert a.to_bytes() == b.to_bytes() and a.digest == b.digest
    assert SourceIndex.parse(a.to_bytes()) == a
    assert a.to_bytes().splitlines()[1] == b"1 etag_a a.csv"  # whitespace never splits a field


def test_drift_names_added_removed_changed() -> None:
    pinned = idx(("a", 1, "v1"), ("b", 1, "v1"), ("c", 1, "v1"), ("d", 1, "v1"))
    now = idx(("a", 1, "v1"), ("b", 1, "v2"), ("c", 2, "v1"), ("e", 1, "v1"))
    drift = pinned.drift_to(now)
    assert drift == Drift(added=("e",), removed=("d",), changed=("b", "c"))
    assert drift.summary() == "1 added (e); 1 removed (d); 2 changed (b, c)"
    assert pinned.drift_to(pinned).empty


def test_long_lists_are_truncated() -> None:
    drift = Drift(added=tuple(f"f{i}" for i in range(12)))
    assert drift.summary(limit=3) == "12 added (f0, f1, f2, … 9 more)"
    assert drift.to_dict(limit=2)["added_files"] == ["f0", "f1"]


@pytest.mark.parametrize("data", [
    b"not an index\n",
    b"canon-source-index/1\n1 v a\n",  # fine, but:
    b"canon-source-index/1\nx v a\n",
    b"canon-source-index/1\n1 v ../escape\n",
    b"canon-source-index/1\n1 v b\n1 v a\n",
    b"canon-source-index/1\n1 v a",
])
def test_parse_refuses_anything_malformed(data: bytes) -> None:
    if data == b"canon-source-index/1\n1 v a\n":
        assert len(SourceIndex.parse(data)) == 1
        return
    with pytest.raises(StateError, match="index"):
        SourceIndex.parse(data)


def test_duplicate_paths_are_refused() -> None:
    with pytest.raises(StateError, match="twice"):
        idx(("a", 1, "x"), ("a", 2, "y"))


def test_manifest_drift_reads_only_the_lines_that_differ() -> None:
    from canon.digest import hash_bytes
    from canon.stores.manifest import Manifest, ManifestEntry
    from canon.stores.sourceindex import manifest_drift

    def m(files: dict[str, tuple[bytes, int]]) -> Manifest:
        return Manifest.build(
            ManifestEntry(p, len(b), mode, hash_bytes(b)) for p, (b, mode) in files.items()
        )

    pinned = m({"a": (b"1", 0o644), "b": (b"2", 0o644), "c": (b"3", 0o644), "d": (b"4", 0o644)})
    now = m({"a": (b"1", 0o644), "b": (b"two", 0o644), "c": (b"3", 0o755), "e": (b"5", 0o644)})
    drift = manifest_drift(pinned.to_bytes(), now)
    assert drift == Drift(added=("e",), removed=("d",), changed=("b", "c"))
    assert manifest_drift(now.to_bytes(), now) == Drift()
    with pytest.raises(StateError, match="not 'mode size sha256 path'"):
        manifest_drift(b"garbage line\n", now)
