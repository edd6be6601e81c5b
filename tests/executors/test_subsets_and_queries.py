"""Subsets and queries, on real DuckDB / SQLite files and a real object store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pytest

from canon.declare.project import QuerySpec, SubsetSpec
from canon.errors import DataError, QueryError
from canon.executors.queries import run_query
from canon.executors.subsets import make_subset
from canon.stores.manifest import MODE_FILE, Manifest, ManifestEntry
from canon.stores.objects import ObjectStore
from canon.stores.records import Content

ROWS = "".join(f"{i},{i % 7},{'rain' if i % 3 else 'sun'}\n" for i in range(1000))
CSV = ("id,v,weather\n" + ROWS).encode()


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "cache")


def put(store: ObjectStore, data: bytes) -> Content:
    d, n = store.add_stream([data])
    return Content(d, n, 1, False)


def subset(store: ObjectStore, tmp: Path, parent: Content, **spec: object) -> Content:
    return make_subset("small", SubsetSpec("full", **spec), parent, "w.csv", store, tmp)  # type: ignore[arg-type]


def rows(store: ObjectStore, c: Content) -> list[str]:
    return store.read_verified(c.digest).decode().splitlines()


def test_sample_is_deterministic_and_depends_on_the_seed(store: ObjectStore, tmp_path: Path) -> None:
    parent = put(store, CSV)
    a = subset(store, tmp_path, parent, sample=0.2, seed=1)
    b = subset(store, tmp_path, parent, sample=0.2, seed=1)
    c = subset(store, tmp_path, parent, sample=0.2, seed=2)
    assert a == b and a.digest != c.digest
    kept = rows(store, a)
    assert kept[0] == "id,v,weather" and 120 < len(kept) - 1 < 280  # ~20 % of 1000 rows
    assert set(kept[1:]) <= set(CSV.decode().splitlines()[1:])  # rows unchanged, original order
    ids = [int(r.split(",")[0]) for r in kept[1:]]
    assert ids == sorted(ids)


def test_sample_keeps_rows_by_content_so_appends_keep_the_earlier_choice(
    store: ObjectStore, tmp_path: Path
) -> None:
    small = rows(store, subset(store, tmp_path, put(store, CSV), sample=0.3, seed=5))
    more = CSV + "".join(f"{i},1,sun\n" for i in range(1000, 1100)).encode()
    bigger = rows(store, subset(store, tmp_path, put(store, more), sample=0.3, seed=5))
    assert bigger[: len(small)] == small


def test_filter_is_sql_over_the_rows(store: ObjectStore, tmp_path: Path) -> None:
    out = rows(store, subset(store, tmp_path, put(store, CSV), filter="weather = 'sun' AND v > 5"))
    assert len(out) - 1 == sum(1 for i in range(1000) if i % 3 == 0 and i % 7 > 5)
    with pytest.raises(DataError, match=r"cannot take the subset of w\.csv"):
        subset(store, tmp_path, put(store, CSV), filter="no_such_column > 1")
    with pytest.raises(DataError, match="one SQL expression"):
        subset(store, tmp_path, put(store, CSV), filter="true; DROP TABLE x")


def test_directory_sample_picks_files_and_copies_nothing(store: ObjectStore, tmp_path: Path) -> None:
    entries = []
    for i in range(200):
        d, n = store.add_stream([f"file {i}\n".encode()])
        entries.append(ManifestEntry(f"part/{i:03}.txt", n, MODE_FILE, d))
    tree = Manifest.build(entries)
    store.add_bytes(tree.to_bytes())
    parent = Content(tree.digest, tree.size, len(tree), True)
    a = subset(store, tmp_path, parent, sample=0.25, seed=7)
    assert a == subset(store, tmp_path, parent, sample=0.25, seed=7)
    sub = store.manifest(a.digest)
    assert 25 < len(sub) < 80 and set(sub.entries) <= set(tree.entries)
    with pytest.raises(DataError, match="filter needs a CSV or Parquet file"):
        subset(store, tmp_path, parent, filter="x > 1")


def make_duckdb(path: Path, rows_: list[tuple[int, str, str]]) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE OR REPLACE TABLE sales (id INTEGER, region VARCHAR, day DATE)")
    con.executemany("INSERT INTO sales VALUES (?, ?, ?)", rows_)
    con.close()


SALES = [(3, "eu", "2025-01-03"), (1, "us", "2025-01-01"), (2, "eu", "2025-01-02"),
         (4, "us", "2025-02-01")]
QUERY = "SELECT id, region FROM sales WHERE day <= CAST(:as_of AS DATE)"


def test_duckdb_query_has_a_canonical_order_and_binds_as_of(store: ObjectStore, tmp_path: Path) -> None:
    make_duckdb(tmp_path / "w.duckdb", SALES)
    spec = QuerySpec(QUERY, "duckdb:///w.duckdb", "2025-01-15")
    a = run_query("q", spec, tmp_path, store, tmp_path / "tmp")
    assert store.read_verified(a.digest) == b"id,region\n1,us\n2,eu\n3,eu\n"
    make_duckdb(tmp_path / "w.duckdb", list(reversed(SALES)))  # other insertion order
    assert run_query("q", spec, tmp_path, None, tmp_path / "tmp").digest == a.digest
    make_duckdb(tmp_path / "w.duckdb", [*SALES, (5, "eu", "2025-01-05")])  # history rewritten
    assert run_query("q", spec, tmp_path, None, tmp_path / "tmp").digest != a.digest
    parquet = run_query("q", QuerySpec(QUERY, "duckdb:///w.duckdb", "2025-01-15", "parquet"),
                        tmp_path, store, tmp_path / "tmp")
    assert store.read_verified(parquet.digest)[:4] == b"PAR1"


def test_sqlite_query_through_sqlalchemy(store: ObjectStore, tmp_path: Path) -> None:
    import sqlalchemy  # noqa: F401  (the warehouse extra; make test installs it)
    con = sqlite3.connect(tmp_path / "w.db")
    con.execute("CREATE TABLE sales (id INTEGER, region TEXT, day TEXT)")
    con.executemany("INSERT INTO sales VALUES (?, ?, ?)", SALES)
    con.commit()
    con.close()
    spec = QuerySpec("SELECT id, region FROM sales WHERE day <= :as_of", "sqlite:///w.db", "2025-01-15")
    a = run_query("q", spec, tmp_path, store, tmp_path / "tmp")
    assert store.read_verified(a.digest) == b"id,region\n1,us\n2,eu\n3,eu\n"


def test_query_errors_are_typed_and_redacted(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="does not exist"):
        run_query("q", QuerySpec("SELECT 1", "duckdb:///nope.duckdb"), tmp_path, store, tmp_path)
    make_duckdb(tmp_path / "w.duckdb", SALES)
    with pytest.raises(QueryError, match="uses :as_of but the dataset declares no as_of"):
        run_query("q", QuerySpec(QUERY, "duckdb:///w.duckdb"), tmp_path, store, tmp_path)
    with pytest.raises(QueryError, match=r"the query against duckdb:///w\.duckdb failed"):
        run_query("q", QuerySpec("SELECT nope FROM sales", "duckdb:///w.duckdb"), tmp_path, store,
                  tmp_path)
