from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from canon.digest import Digest, hash_bytes
from canon.stores.statcache import RACY_WINDOW_NS, FileStat, StatCache

D1 = hash_bytes(b"one")
D2 = hash_bytes(b"two")
OLD = time.time_ns() - 10 * 1_000_000_000  # ten seconds ago: never racy
NOW = time.time_ns()


def db_path(tmp_path: Path) -> Path:
    return tmp_path / ".canon" / "state.db"


def test_records_survive_reopen(tmp_path: Path) -> None:
    st = FileStat(7, 3, OLD)
    with StatCache(db_path(tmp_path)) as cache:
        cache.record_file("data/a", st, D1, NOW)
        cache.record_dir("data", "fp", D2, 1, 3, NOW)
    with StatCache(db_path(tmp_path)) as cache:
        assert cache.file_digest("data/a", st) == D1
        hit = cache.dir_entry("data", "fp", OLD)
        assert hit is not None and (hit.digest, hit.nfiles, hit.size) == (D2, 1, 3)
        assert not cache.rebuilt


@pytest.mark.parametrize(
    "changed", [FileStat(8, 3, OLD), FileStat(7, 4, OLD), FileStat(7, 3, OLD + 1)]
)
def test_any_stat_change_is_a_miss(tmp_path: Path, changed: FileStat) -> None:
    with StatCache(db_path(tmp_path)) as cache:
        cache.record_file("a", FileStat(7, 3, OLD), D1, NOW)
        cache.flush()
        assert cache.file_digest("a", changed) is None


def test_racy_entry_is_not_trusted(tmp_path: Path) -> None:
    """A file modified within the timestamp tick after it was hashed keeps its
    stat; an entry whose mtime is that close to the hash time must be re-hashed."""
    with StatCache(db_path(tmp_path)) as cache:
        hashed = NOW
        racy = FileStat(1, 3, hashed - RACY_WINDOW_NS // 2)
        future = FileStat(2, 3, hashed + 5_000_000_000)  # clock skew / archive timestamps
        safe = FileStat(3, 3, hashed - RACY_WINDOW_NS - 1)
        cache.record_files([("racy", racy, D1), ("future", future, D1), ("safe", safe, D1)], hashed)
        cache.flush()
        assert cache.file_digest("racy", racy) is None
        assert cache.file_digest("future", future) is None
        assert cache.file_digest("safe", safe) == D1
        cache.record_dir("d", "fp", D2, 1, 3, hashed)
        cache.flush()
        assert cache.dir_entry("d", "fp", racy.mtime_ns) is None
        assert cache.dir_entry("d", "fp", safe.mtime_ns) is not None
        assert cache.dir_entry("d", "other-fp", safe.mtime_ns) is None


def test_huge_inodes_fit(tmp_path: Path) -> None:
    st = FileStat(2**64 - 5, 1, OLD)
    with StatCache(db_path(tmp_path)) as cache:
        cache.record_file("a", st, D1, NOW)
        cache.flush()
        assert cache.file_digest("a", st) == D1


def test_files_under_is_exactly_the_subtree(tmp_path: Path) -> None:
    with StatCache(db_path(tmp_path)) as cache:
        for p in ["data", "data/a", "data/sub/b", "data-x/c", "data0/d", "dat/e", "data2/f"]:
            cache.record_file(p, FileStat(1, 1, OLD), D1, NOW)
        cache.flush()
        assert sorted(cache.files_under("data")) == ["data/a", "data/sub/b"]
        cache.forget_files(["data/a"])
        cache.flush()
        assert sorted(cache.files_under("data")) == ["data/sub/b"]


def test_writes_are_buffered_until_flush(tmp_path: Path) -> None:
    with StatCache(db_path(tmp_path)) as cache:
        cache.record_file("a", FileStat(1, 1, OLD), D1, NOW)
        other = StatCache(db_path(tmp_path))
        assert other.file_digest("a", FileStat(1, 1, OLD)) is None
        cache.flush()
        assert other.file_digest("a", FileStat(1, 1, OLD)) == D1
        other.close()


def test_garbage_state_db_is_rebuilt(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 1000)
    with StatCache(path) as cache:
        assert cache.rebuilt
        assert cache.file_digest("a", FileStat(1, 1, OLD)) is None
        cache.record_file("a", FileStat(1, 1, OLD), D1, NOW)
    with StatCache(path) as cache:
        assert cache.file_digest("a", FileStat(1, 1, OLD)) == D1
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_damage_found_mid_session_is_survived(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    with StatCache(path) as cache:
        cache.record_files([(f"d/f{i:05d}", FileStat(i, 1, OLD), D1) for i in range(3000)], NOW)
    cache = StatCache(path)  # open while the file is sound...
    raw = bytearray(path.read_bytes())
    for off in range(4096, len(raw), 1024):  # ...then trash every page but the header
        raw[off : off + 512] = b"\xa5" * 512
    path.write_bytes(bytes(raw))
    # No call raises; results are at worst misses.
    assert len(cache.files_under("d")) < 3000
    assert cache.rebuilt
    cache.file_digest("d/f00001", FileStat(1, 1, OLD))
    cache.record_file("x", FileStat(1, 1, OLD), D2, NOW)
    cache.flush()
    cache.close()
    with StatCache(path) as again:
        again.record_file("y", FileStat(1, 1, OLD), D2, NOW)
        again.flush()
        assert again.file_digest("y", FileStat(1, 1, OLD)) == D2


def test_unusable_location_falls_back_to_memory(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    path.mkdir(parents=True)  # a directory where the database should be
    with StatCache(path) as cache:
        cache.record_file("a", FileStat(1, 1, OLD), D1, NOW)
        cache.flush()
        assert cache.file_digest("a", FileStat(1, 1, OLD)) == D1


def test_garbage_rows_are_misses(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    StatCache(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO stat_files_v2 VALUES ('a', 1, 1, ?, ?, 'not-a-digest')", (OLD, NOW))
    db.execute("INSERT INTO stat_files_v2 VALUES ('b', 'x', 1, ?, ?, ?)", (OLD, NOW, b"1" * 32))
    db.execute("INSERT INTO stat_files_v2 VALUES ('c', 1, 1, ?, ?, ?)", (OLD, NOW, b"short"))
    db.execute("INSERT INTO stat_files_v2 VALUES ('d', 1, 1, ?, ?, ?)", (OLD, NOW, "x" * 32))
    db.execute("INSERT INTO stat_dirs_v1 VALUES ('d', 'fp', 'nope', 1, 1, ?)", (NOW,))
    db.commit()
    db.close()
    with StatCache(path) as cache:
        assert cache.file_digest("a", FileStat(1, 1, OLD)) is None
        assert cache.file_digest("b", FileStat(1, 1, OLD)) is None
        assert cache.file_digest("c", FileStat(1, 1, OLD)) is None
        assert cache.file_digest("d", FileStat(1, 1, OLD)) is None
        assert cache.dir_entry("d", "fp", OLD) is None
        db = sqlite3.connect(path)
        db.execute("INSERT INTO stat_files_v2 VALUES ('t/a', 1, 1, ?, ?, 'x')", (OLD, NOW))
        db.execute("INSERT INTO stat_files_v2 VALUES ('t/b', 1, 1, ?, ?, ?)", (OLD, NOW, "y" * 32))
        db.commit()
        db.close()
        assert cache.files_under("t") == {"t/a": (1, 1, OLD, None), "t/b": (1, 1, OLD, None)}


def test_a_busy_database_is_skipped_not_waited_on_forever(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    StatCache(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with StatCache(path) as cache:
            cache.record_file("a", FileStat(1, 1, OLD), D1, NOW)
            cache.flush()  # dropped after the busy timeout, no exception
            assert cache.file_digest("a", FileStat(1, 1, OLD)) is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert path.is_file()  # busy is not damage: the database was not thrown away


def test_threads_share_one_cache(tmp_path: Path) -> None:
    with StatCache(db_path(tmp_path)) as cache:

        def work(t: int) -> None:
            for i in range(200):
                cache.record_file(f"t{t}/f{i}", FileStat(i, 1, OLD), D1, NOW)
                if i % 50 == 0:
                    cache.flush()
                cache.file_digest(f"t{t}/f{i}", FileStat(i, 1, OLD))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        cache.flush()
        assert all(len(cache.files_under(f"t{t}")) == 200 for t in range(8))


def test_in_memory_cache(tmp_path: Path) -> None:
    with StatCache(None) as cache:
        cache.record_file("a", FileStat(1, 1, OLD), Digest(D1), NOW)
        cache.flush()
        assert cache.file_digest("a", FileStat(1, 1, OLD)) == D1
