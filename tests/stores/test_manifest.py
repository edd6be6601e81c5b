from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canon.digest import Digest, hash_bytes
from canon.errors import PathError, StateError
from canon.stores.manifest import Manifest, ManifestEntry, normal_mode

H1 = "a" * 64
H2 = "b" * 64


def entry(path: str, size: int = 1, mode: int = 0o644, hexd: str = H1) -> ManifestEntry:
    return ManifestEntry(path, size, mode, Digest("sha256:" + hexd))


def test_serialisation_is_exact_and_sorted_by_utf8_bytes() -> None:
    m = Manifest.build(
        [entry("z", 3), entry("a/b", 10, 0o755, H2), entry("a-b"), entry("é"), entry("a.b")]
    )
    assert (
        m.to_bytes()
        == (
            f"644 1 {H1} a-b\n644 1 {H1} a.b\n755 10 {H2} a/b\n644 3 {H1} z\n644 1 {H1} é\n"
        ).encode()
    )
    paths = [e.path for e in m]
    assert paths == sorted(paths, key=lambda p: p.encode("utf-8"))
    assert len(m) == 5
    assert m.size == 16
    assert m.digest == "sha256:" + hashlib.sha256(m.to_bytes()).hexdigest()


def test_parse_round_trips() -> None:
    m = Manifest.build([entry("data/x.csv", 5), entry("run.sh", 7, 0o755, H2)])
    again = Manifest.parse(m.to_bytes())
    assert again == m
    assert again.digest == m.digest
    assert again.to_bytes() == m.to_bytes()


def test_empty_manifest() -> None:
    m = Manifest.build([])
    assert m.to_bytes() == b""
    assert m.digest == hash_bytes(b"")
    assert Manifest.parse(b"") == m
    assert (len(m), m.size) == (0, 0)


@pytest.mark.parametrize(
    ("st_mode", "mode"),
    [(0o100644, 0o644), (0o100600, 0o644), (0o100755, 0o755), (0o100700, 0o755), (0o100654, 0o644)],
)
def test_mode_is_normalised_by_owner_exec_bit(st_mode: int, mode: int) -> None:
    assert normal_mode(st_mode) == mode
    assert Manifest.build([entry("f", mode=st_mode)]).entries[0].mode == mode


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("bad\nname", "line break"),
        ("nul\x00name", "NUL"),
        ("../up", "'..' component"),
        ("/abs", "absolute"),
        ("a//b", "empty component"),
        ("bad\udcffname", "not valid UTF-8"),
    ],
)
def test_build_refuses_unrecordable_paths_naming_them(path: str, message: str) -> None:
    with pytest.raises(PathError, match=message) as info:
        Manifest.build([entry("ok"), entry(path)], where="data")
    assert repr("data/" + path)[1:-1] in info.value.message


def test_build_refuses_duplicates_and_file_dir_conflicts() -> None:
    with pytest.raises(PathError, match="'a' appears twice"):
        Manifest.build([entry("a"), entry("a", hexd=H2)])
    with pytest.raises(PathError, match="'a/b' is both a file and a directory"):
        Manifest.build([entry("a/b"), entry("a/b/c")])


GOOD = f"644 1 {H1} a\n".encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (GOOD[:-1], "does not end with a newline"),
        (f"777 1 {H1} a\n".encode(), "mode '777'"),
        (f"0644 1 {H1} a\n".encode(), "mode '0644'"),
        (f"644 01 {H1} a\n".encode(), "size '01'"),
        (f"644 -1 {H1} a\n".encode(), "size '-1'"),
        (f"644 ١ {H1} a\n".encode(), "size"),  # a non-ASCII digit
        (f"644 1 {H1.upper()} a\n".encode(), "not a sha256 hex"),
        (f"644 1 {H1[:-1]} a\n".encode(), "not a sha256 hex"),
        (f"644 1 {H1}\n".encode(), "expected 'mode size sha256 path'"),
        (f"644 1 {H1} /etc/passwd\n".encode(), "is absolute"),
        (f"644 1 {H1} ../../.git/hooks/post-checkout\n".encode(), "'..' component"),
        (f"644 1 {H1} a/../../b\n".encode(), "'..' component"),
        (f"644 1 {H1} ./a\n".encode(), "'.' component"),
        (f"644 1 {H1} a//b\n".encode(), "empty component"),
        (f"644 1 {H1} a/\n".encode(), "empty component"),
        (f"644 1 {H1} \n".encode(), "empty"),
        (f"644 1 {H1} a\x00b\n".encode(), "NUL"),
        (f"644 1 {H1} a\rb\n".encode(), "line break"),
        (f"644 1 {H1} b\n644 1 {H1} a\n".encode(), "line 2: unsorted path 'a'"),
        (f"644 1 {H1} a\n644 1 {H2} a\n".encode(), "line 2: duplicate path 'a'"),
        (f"644 1 {H1} a\n644 1 {H1} a/b\n".encode(), "'a' is both a file and a directory"),
        (GOOD + b"\n", "line 2: expected"),
    ],
)
def test_parse_rejects_hostile_manifests(data: bytes, message: str) -> None:
    with pytest.raises(StateError, match=message):
        Manifest.parse(data)


def test_manifest_cannot_be_built_unchecked() -> None:
    with pytest.raises(TypeError, match=r"Manifest\.build"):
        Manifest((entry("a"),))


_name = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="/\x00\n\r"),
    min_size=1,
    max_size=8,
).filter(lambda s: s not in (".", ".."))


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.lists(_name, min_size=1, max_size=3).map("/".join),
        st.tuples(
            st.integers(0, 2**40), st.sampled_from([0o644, 0o755]), st.sampled_from([H1, H2])
        ),
        max_size=20,
    )
)
def test_build_parse_round_trip_property(files: dict[str, tuple[int, int, str]]) -> None:
    entries = [entry(p, size, mode, h) for p, (size, mode, h) in files.items()]
    try:
        m = Manifest.build(entries)
    except PathError as exc:
        assert "both a file and a directory" in exc.message
        return
    assert Manifest.parse(m.to_bytes()) == m


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(alphabet="ab./\n\r\x00é\udcff", max_size=7), max_size=6))
def test_fast_whole_list_check_agrees_with_per_path_check(paths: list[str]) -> None:
    from canon.stores.manifest import _all_plain, path_problem

    assert _all_plain(paths) == all(path_problem(p) is None for p in paths)


def test_build_refuses_entries_without_a_real_digest() -> None:
    with pytest.raises(StateError, match="'data/b': 'sha256:zz' is not a digest"):
        Manifest.build(
            [entry("a"), ManifestEntry("b", 1, 0o644, Digest("sha256:zz"))], where="data"
        )
