from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import canon.digest as digest_mod
import canon.observe.content as content_mod
from canon.digest import Digest, hash_bytes
from canon.errors import PathError, StateError
from canon.observe.content import Content, ContentReader, digest_path
from canon.stores.manifest import Manifest, ManifestEntry
from canon.stores.statcache import StatCache

LONG_AGO = time.time_ns() - 3600 * 1_000_000_000


def gen(root: Path, files: dict[str, bytes], *, age: bool = True) -> None:
    """Write ``files`` under ``root``; with ``age``, date them an hour back so
    the stat cache trusts them (nothing is racy)."""
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if age:
            os.utime(p, ns=(LONG_AGO, LONG_AGO))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    gen(tmp_path, {"data/a.csv": b"a,b\n1,2\n", "data/sub/b.bin": b"\x00" * 5000, "data/c": b""})
    return tmp_path


@pytest.fixture
def cache(ws: Path) -> Iterator[StatCache]:
    with StatCache(ws / ".canon" / "state.db") as c:
        yield c


class Hashed:
    """Counts the files the observer actually reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        real = content_mod._hash_checked

        def counting(paths: Sequence[str]) -> list[tuple[Digest, int, int, int] | None]:
            self.paths.extend(paths)
            return real(paths)

        monkeypatch.setattr(content_mod, "_hash_checked", counting)


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> Hashed:
    return Hashed(monkeypatch)


def test_file_digest_is_sha256_of_bytes(ws: Path, cache: StatCache) -> None:
    assert digest_path(ws, "data/a.csv", cache) == Content(hash_bytes(b"a,b\n1,2\n"), 8, 1, False)


def test_directory_digest_is_its_manifest_digest(ws: Path, cache: StatCache) -> None:
    expected = Manifest.build(
        [
            ManifestEntry("a.csv", 8, 0o644, hash_bytes(b"a,b\n1,2\n")),
            ManifestEntry("sub/b.bin", 5000, 0o644, hash_bytes(b"\x00" * 5000)),
            ManifestEntry("c", 0, 0o644, hash_bytes(b"")),
        ]
    )
    snap = ContentReader(ws, cache).snapshot("data")
    assert snap == (Content(expected.digest, 5008, 3, True), expected)
    assert ContentReader(ws, cache).snapshot("data/a.csv") == (
        Content(hash_bytes(b"a,b\n1,2\n"), 8, 1, False),
        None,
    )


@pytest.mark.parametrize("path", ["nope", "data/nope", "data/a.csv/below", "nope/deeper"])
def test_missing_is_none(ws: Path, cache: StatCache, path: str) -> None:
    assert digest_path(ws, path, cache) is None


def test_empty_directory(ws: Path, cache: StatCache) -> None:
    (ws / "empty" / "nested").mkdir(parents=True)
    assert digest_path(ws, "empty", cache) == Content(hash_bytes(b""), 0, 0, True)


def test_directory_digest_is_stable_across_runs_and_caches(ws: Path, tmp_path: Path) -> None:
    with StatCache(ws / ".canon" / "state.db") as c1:
        first = digest_path(ws, "data", c1)
        second = digest_path(ws, "data", c1)
    with StatCache(None) as fresh:
        third = digest_path(ws, "data", fresh)
    assert first == second == third


def _mutations() -> dict[str, object]:
    def change(ws: Path) -> None:
        gen(ws, {"data/sub/b.bin": b"\x00" * 4999 + b"\x01"}, age=False)

    def add(ws: Path) -> None:
        gen(ws, {"data/sub/new": b""})

    def remove(ws: Path) -> None:
        (ws / "data" / "c").unlink()

    def rename(ws: Path) -> None:
        (ws / "data" / "c").rename(ws / "data" / "d")

    def chmod_x(ws: Path) -> None:
        os.chmod(ws / "data" / "a.csv", 0o755)

    return {"change": change, "add": add, "remove": remove, "rename": rename, "exec": chmod_x}


@pytest.mark.parametrize("mutate", list(_mutations().values()), ids=list(_mutations()))
def test_directory_digest_changes_with_any_file(ws: Path, cache: StatCache, mutate: object) -> None:
    before = digest_path(ws, "data", cache)
    assert callable(mutate)
    mutate(ws)
    after = digest_path(ws, "data", cache)
    assert before is not None and after is not None
    assert after.digest != before.digest
    with StatCache(None) as fresh:  # and the cached answer is the true one
        assert digest_path(ws, "data", fresh) == after


def test_group_write_bit_is_not_content(ws: Path, cache: StatCache) -> None:
    before = digest_path(ws, "data", cache)
    os.chmod(ws / "data" / "a.csv", 0o664)
    assert digest_path(ws, "data", cache) == before


def test_unchanged_directory_is_answered_from_its_fingerprint(
    ws: Path, cache: StatCache, hashed: Hashed, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = digest_path(ws, "data", cache)
    assert len(hashed.paths) == 3

    def no_per_file_rows(prefix: str) -> dict[str, object]:
        raise AssertionError("the fast path must not read per-file rows")

    monkeypatch.setattr(cache, "files_under", no_per_file_rows)
    assert digest_path(ws, "data", cache) == first
    assert len(hashed.paths) == 3


def test_only_changed_files_are_rehashed(ws: Path, cache: StatCache, hashed: Hashed) -> None:
    digest_path(ws, "data", cache)
    hashed.paths.clear()
    gen(ws, {"data/a.csv": b"x,y\n3,4\n"}, age=False)
    os.utime(ws / "data" / "a.csv", ns=(LONG_AGO, LONG_AGO + 1))  # same size, new mtime
    after = digest_path(ws, "data", cache)
    assert [Path(p).name for p in hashed.paths] == ["a.csv"]
    assert after is not None and after.nfiles == 3


def test_stat_cache_hit_does_not_reread(ws: Path, cache: StatCache, hashed: Hashed) -> None:
    """Same inode, size and (old) mtime: the cache is trusted, the bytes are not
    read again (so an in-place edit that restores the mtime goes unseen, exactly
    as with Git)."""
    p = ws / "data" / "a.csv"
    first = digest_path(ws, "data/a.csv", cache)
    st = p.stat()
    with open(p, "r+b") as f:  # same inode, same size
        f.write(b"X")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    hashed.paths.clear()
    assert digest_path(ws, "data/a.csv", cache) == first
    assert hashed.paths == []


def test_racy_entry_is_rehashed(ws: Path, cache: StatCache, hashed: Hashed) -> None:
    """A file written just now may be written again within the same timestamp
    tick after we hash it; its entry is not trusted, so the edit is seen."""
    p = ws / "data" / "fresh.txt"
    p.write_bytes(b"first")  # mtime ~ now: racy
    first = digest_path(ws, "data/fresh.txt", cache)
    tree = digest_path(ws, "data", cache)
    st = p.stat()
    with open(p, "r+b") as f:
        f.write(b"SECON"[:5])  # same size, same inode...
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the same mtime
    hashed.paths.clear()
    again = digest_path(ws, "data/fresh.txt", cache)
    assert first is not None and again is not None
    assert again.digest == hash_bytes(b"SECON") != first.digest
    tree_again = digest_path(ws, "data", cache)
    assert tree is not None and tree_again is not None and tree_again.digest != tree.digest
    assert [Path(x).name for x in hashed.paths] == ["fresh.txt", "fresh.txt"]


def test_many_files_hash_in_parallel_like_serially(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen(tmp_path, {f"d/{i % 7}/f{i}": os.urandom(i * 37) for i in range(300)})
    with StatCache(None) as c:
        serial = digest_path(tmp_path, "d", c)
    monkeypatch.setattr(digest_mod, "PARALLEL_MIN_WORK_NS", 0)
    monkeypatch.setattr(digest_mod, "cores", lambda: 2)
    with StatCache(None) as c:
        assert digest_path(tmp_path, "d", c) == serial


@pytest.mark.parametrize(
    ("make", "path", "named"),
    [
        (lambda ws: (ws / "data" / "link").symlink_to("a.csv"), "data", "data/link"),
        (lambda ws: (ws / "data" / "out").symlink_to("/etc/passwd"), "data", "data/out"),
        (lambda ws: (ws / "data" / "dl").symlink_to(ws / "data" / "sub"), "data", "data/dl"),
        (lambda ws: (ws / "alias").symlink_to(ws / "data"), "alias", "alias"),
        (lambda ws: (ws / "alias").symlink_to(ws / "data"), "alias/a.csv", "alias"),
        (lambda ws: (ws / "f").symlink_to("/etc/passwd"), "f", "f"),
        (lambda ws: (ws / "data" / "sub" / "up").symlink_to(".."), "data", "data/sub/up"),
    ],
)
def test_symlinks_are_refused(
    ws: Path, cache: StatCache, make: object, path: str, named: str
) -> None:
    assert callable(make)
    make(ws)
    with pytest.raises(PathError, match=f"^{named} is a symbolic link") as info:
        digest_path(ws, path, cache)
    assert info.value.hint is not None and "does not follow symbolic links" in info.value.hint


def test_special_files_are_refused(ws: Path, cache: StatCache) -> None:
    os.mkfifo(ws / "data" / "pipe")
    with pytest.raises(PathError, match="data/pipe is not a regular file"):
        digest_path(ws, "data", cache)
    with pytest.raises(PathError, match="data/pipe is not a regular file"):
        digest_path(ws, "data/pipe", cache)


def test_unrecordable_file_names_are_refused(ws: Path, cache: StatCache) -> None:
    gen(ws, {"data/bad\nname": b""})
    with pytest.raises(PathError, match=r"cannot record 'data/bad\\nname'"):
        digest_path(ws, "data", cache)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside", "'..' component"),
        ("/etc", "absolute"),
        ("", "empty path"),
        ("data/", "empty component"),
        ("./data", "'.' component"),
        (".git/config", "inside .git"),
        (".canon", "inside .canon"),
    ],
)
def test_bad_workspace_paths_are_refused(
    ws: Path, cache: StatCache, path: str, message: str
) -> None:
    with pytest.raises(PathError, match=message):
        digest_path(ws, path, cache)


def test_damaged_state_db_is_rebuilt(ws: Path) -> None:
    with StatCache(None) as c:
        truth = digest_path(ws, "data", c)
    db = ws / ".canon" / "state.db"
    db.parent.mkdir(exist_ok=True)
    db.write_bytes(os.urandom(64 * 1024))
    with StatCache(db) as c:
        assert digest_path(ws, "data", c) == truth
        assert c.rebuilt
    with StatCache(db) as c:
        assert not c.rebuilt
        assert digest_path(ws, "data", c) == truth


def test_a_file_that_keeps_changing_fails_clearly(
    ws: Path, cache: StatCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always_changed(paths: Sequence[str]) -> list[tuple[Digest, int, int, int] | None]:
        return [(hash_bytes(b""), 0, 0, 0) for _ in paths]

    monkeypatch.setattr(content_mod, "_hash_checked", always_changed)
    with pytest.raises(StateError, match="data kept changing while canon was reading it"):
        digest_path(ws, "data", cache)
    with pytest.raises(StateError, match=r"data/a\.csv kept changing"):
        digest_path(ws, "data/a.csv", cache)


def test_a_file_that_changed_once_is_reread(
    ws: Path, cache: StatCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = content_mod._hash_checked
    calls = []

    def changed_first_time(paths: Sequence[str]) -> list[tuple[Digest, int, int, int] | None]:
        calls.append(list(paths))
        if len(calls) == 1:
            return [None for _ in paths]  # e.g. replaced by a symlink mid-hash
        return real(paths)

    monkeypatch.setattr(content_mod, "_hash_checked", changed_first_time)
    with StatCache(None) as fresh:
        truth = ContentReader(ws, fresh)
        monkeypatch.setattr(content_mod, "_hash_checked", real)
        expected = truth.content("data")
    monkeypatch.setattr(content_mod, "_hash_checked", changed_first_time)
    assert digest_path(ws, "data", cache) == expected
    assert len(calls) == 2
