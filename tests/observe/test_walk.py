"""The walk: one process or two, the same listings and fingerprint; a child that
fails or dies costs time, never a wrong answer."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import canon.observe.walk as walk_mod
from canon.errors import PathError
from canon.observe.content import ContentReader
from canon.observe.walk import walk
from canon.stores.statcache import StatCache

_REAL_FORK_SAFE = walk_mod._fork_safe


@pytest.fixture(autouse=True)
def forking(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Let the walk fork although this test process runs other threads (the session's
    moto server): the child only walks, marshals and writes, touching no lock those
    threads could hold. Records the children forked, so a test can say one was."""
    forked: list[int] = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(walk_mod, "_fork_safe", lambda: True)
    monkeypatch.setattr(os, "fork", counting_fork)
    return forked


def _tree(root: Path) -> Path:
    top = root / "data"
    for i in range(12):
        d = top / f"d{i:02d}"
        d.mkdir(parents=True)
        for j in range(i % 4):
            (d / f"f{j}.txt").write_text(f"{i}-{j}")
        if i % 3 == 0:
            (d / "nested" / "deeper").mkdir(parents=True)
            (d / "nested" / "deeper" / "x.bin").write_bytes(bytes(range(i)))
        if i == 5:
            (d / "empty").mkdir()
    (top / "top.txt").write_text("top")
    (top / "d03" / "caf\u00e9.txt").write_text("accent")
    return top


def _no_children_left() -> bool:
    try:
        return os.waitpid(-1, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def test_two_processes_give_the_same_walk_as_one(tmp_path: Path, forking: list[int]) -> None:
    top = _tree(tmp_path)
    one = walk(str(top), "data")
    assert not forking
    two = walk(str(top), "data", split=True)
    assert len(forking) == 1
    assert two == one
    assert one.nfiles == 1 + sum(i % 4 for i in range(12)) + 4 + 1
    assert [lst.rel for lst in one.listings][:3] == ["", "d00/nested/deeper/", "d01/"]
    assert _no_children_left()


def test_the_fingerprint_follows_a_change_in_either_half(tmp_path: Path) -> None:
    top = _tree(tmp_path)
    before = walk(str(top), "data", split=True).fingerprint
    (top / "d11" / "f0.txt").write_text("changed, and longer")
    after = walk(str(top), "data", split=True)
    assert after.fingerprint != before
    assert after == walk(str(top), "data")


def test_a_child_that_dies_midway_leaves_its_part_to_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = _tree(tmp_path)
    expected = walk(str(top), "data")
    parent = os.getpid()
    real_subtree = walk_mod._subtree

    def dying(
        base: str, rel: str, relpath: str
    ) -> list[tuple[str, list[str], list[int], list[str]]]:
        if os.getpid() != parent:
            os._exit(9)  # the child is killed before it sends anything
        return real_subtree(base, rel, relpath)

    monkeypatch.setattr(walk_mod, "_subtree", dying)
    assert walk(str(top), "data", split=True) == expected
    assert _no_children_left()


def test_a_folder_that_fails_in_the_child_is_reported_by_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = _tree(tmp_path)
    (top / "d07" / "link").symlink_to(tmp_path)  # fine: a link is listed, not followed
    parent = os.getpid()
    real_read = walk_mod._read_dir

    def failing(base: str, rel: str, relpath: str) -> tuple[str, list[str], list[int], list[str]]:
        if rel.startswith("d07/") and os.getpid() != parent:
            raise PathError("child-only failure")
        if rel == "d09/":
            raise PathError("cannot read directory data/d09: Permission denied")
        return real_read(base, rel, relpath)

    monkeypatch.setattr(walk_mod, "_read_dir", failing)
    with pytest.raises(PathError, match="data/d09: Permission denied"):
        walk(str(top), "data", split=True)
    assert _no_children_left()
    monkeypatch.setattr(
        walk_mod,
        "_read_dir",
        lambda b, r, p: failing(b, r, p) if r != "d09/" else real_read(b, r, p),
    )
    assert walk(str(top), "data", split=True) == walk(str(top), "data")


def test_a_process_with_threads_does_not_fork(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(walk_mod, "_fork_safe", _REAL_FORK_SAFE)  # the real check, this time
    top = _tree(tmp_path)
    expected = walk(str(top), "data")

    def no_fork() -> int:
        raise AssertionError("forked while another thread ran")

    monkeypatch.setattr(os, "fork", no_fork)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert walk(str(top), "data", split=True) == expected
    finally:
        stop.set()
        other.join()


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """The walks ``ContentReader`` asks for: (relpath, split)."""
    import canon.observe.content as content_mod

    calls: list[tuple[str, bool]] = []
    real = walk_mod.walk

    def spy(top: str, relpath: str, *, split: bool = False) -> walk_mod.Walk:
        calls.append((relpath, split))
        return real(top, relpath, split=split)

    monkeypatch.setattr(content_mod, "walk_tree", spy)
    return calls


def test_a_tree_recorded_big_is_walked_by_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, walks: list[tuple[str, bool]]
) -> None:
    import canon.observe.content as content_mod

    top = _tree(tmp_path)
    monkeypatch.setattr(content_mod, "SPLIT_AT", 20)
    with StatCache(tmp_path / "stat.db") as cache:
        first = ContentReader(tmp_path, cache).content("data")
        second = ContentReader(tmp_path, cache).content("data")
    assert first is not None and first == second
    assert first.nfiles == walk(str(top), "data").nfiles >= 20
    assert walks == [("data", False), ("data", True)]  # no record yet, then the recorded count


def test_a_walk_begun_early_is_joined_and_gives_the_same_walk(tmp_path: Path) -> None:
    top = _tree(tmp_path)
    expected = walk(str(top), "data")
    walk_mod.begin(str(top), "data")
    assert str(top) in walk_mod._begun
    assert walk(str(top), "data") == expected  # no split asked: the begun child is joined
    assert not walk_mod._begun and _no_children_left()


def test_a_top_folder_changed_since_the_early_start_is_walked_afresh(tmp_path: Path) -> None:
    top = _tree(tmp_path)
    walk_mod.begin(str(top), "data")
    (top / "d99").mkdir()
    (top / "d99" / "new.txt").write_text("new")
    after = walk(str(top), "data", split=True)
    assert "d99/" in [lst.rel for lst in after.listings]
    assert after == walk(str(top), "data")
    assert not walk_mod._begun and _no_children_left()


def test_a_walk_begun_and_never_joined_is_reaped_at_exit(tmp_path: Path) -> None:
    top = _tree(tmp_path)
    walk_mod.begin(str(top), "data")
    walk_mod._abandon_all()  # what atexit runs
    assert not walk_mod._begun and _no_children_left()


def test_begin_known_starts_the_trees_the_stat_cache_saw_big(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from canon.observe.root import stat_cache_path

    top = _tree(tmp_path)
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "a").write_text("a")
    monkeypatch.setattr(walk_mod, "SPLIT_AT", 20)
    walk_mod.begin_known(tmp_path)  # no stat cache yet: nothing to start
    assert not walk_mod._begun
    stat_cache_path(tmp_path).parent.mkdir()
    with StatCache(stat_cache_path(tmp_path)) as cache:
        reader = ContentReader(tmp_path, cache)
        first = reader.content("data")
        assert reader.content("small") is not None
    walk_mod.begin_known(tmp_path)
    assert list(walk_mod._begun) == [str(top)]
    with StatCache(stat_cache_path(tmp_path)) as cache:
        assert ContentReader(tmp_path, cache).content("data") == first
    assert not walk_mod._begun and _no_children_left()


def test_a_snapshot_just_after_an_observation_reuses_its_walk(
    tmp_path: Path, walks: list[tuple[str, bool]]
) -> None:
    top = _tree(tmp_path)
    with StatCache(tmp_path / "stat.db") as cache:
        reader = ContentReader(tmp_path, cache)
        seen = reader.content("data")
        snap = reader.snapshot("data", just_observed=True)
        assert [w[0] for w in walks] == ["data"]  # one walk for both
        assert snap is not None and snap[0] == seen and snap[1] is not None
        assert snap[1].digest == seen.digest if seen else False
        (top / "d01" / "f0.txt").write_text("changed after the walk, and longer")
        fresh = reader.snapshot("data")  # not just observed: walks again, sees the change
        assert [w[0] for w in walks] == ["data", "data"]
        assert fresh is not None and seen is not None and fresh[0].digest != seen.digest


@pytest.mark.parametrize(
    "folder",
    [
        ("a/", ["x", "caf\udce9"], [1, 2, 3, 0o100644, 4, 5, 6, 0o100644], ["sub"]),
        ("", [], [], []),
        ("big/", ["f"], [1 << 63, 1, 2, 0o100644], []),  # an inode past int64: sent as a list
    ],
)
def test_what_the_child_sends_comes_back_the_same(
    folder: tuple[str, list[str], list[int], list[str]],
) -> None:
    import marshal

    sent = marshal.loads(marshal.dumps(walk_mod._packed(folder)))
    assert walk_mod._unpacked(sent) == folder


def test_a_child_killed_in_the_middle_of_a_record_costs_only_that_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = _tree(tmp_path)
    expected = walk(str(top), "data")
    parent = os.getpid()
    real_write = walk_mod.write_all
    written: list[int] = []

    def cut(fd: int, view: memoryview) -> None:
        if os.getpid() != parent and written:
            real_write(fd, view[: len(view) // 2])
            os._exit(9)  # killed half-way through its second record
        written.append(len(view))
        real_write(fd, view)

    monkeypatch.setattr(walk_mod, "write_all", cut)
    assert walk(str(top), "data", split=True) == expected
    assert _no_children_left()


def test_a_child_that_hangs_is_killed_and_its_part_walked_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    top = _tree(tmp_path)
    expected = walk(str(top), "data")
    parent = os.getpid()
    real_subtree = walk_mod._subtree
    taken: list[str] = []

    def hanging(
        base: str, rel: str, relpath: str
    ) -> list[tuple[str, list[str], list[int], list[str]]]:
        if os.getpid() != parent:
            time.sleep(3600)  # stuck on the first folder it takes
        taken.append(rel)
        time.sleep(0.05)  # this process is slow enough for the child to take one
        return real_subtree(base, rel, relpath)

    monkeypatch.setattr(walk_mod, "_subtree", hanging)
    monkeypatch.setattr(walk_mod, "CHILD_GRACE", 0.5)
    started = time.monotonic()
    assert walk(str(top), "data", split=True) == expected
    assert 0.5 <= time.monotonic() - started < 30  # waited its grace, then went on
    # every folder walked here once: the child's after the queue and its grace
    assert sorted(taken) == [f"d{i:02d}/" for i in range(12)]
    assert taken[-1] != "d11/"
    assert _no_children_left()
