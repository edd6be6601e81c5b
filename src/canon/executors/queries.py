"""Run a declared query and store its result with a canonical row order.

A query dataset is pinned by its text, its database (URL, redacted), its
``as_of`` and the digest of its result. For that digest to mean anything the
result must be byte-for-byte reproducible, so rows are sorted by all columns
(``ORDER BY ALL``) and written by DuckDB with one thread, as CSV (with a
header) or Parquet.

``as_of`` is passed as the bind parameter ``:as_of`` when the query uses it.
Engines with time travel use it for the snapshot (``FOR SYSTEM_TIME AS OF
:as_of``, ``AT (TIMESTAMP => :as_of)``); engines without it (SQLite, DuckDB
tables) use it in WHERE clauses (``WHERE loaded_at <= :as_of``).

Databases: ``duckdb:///file`` is read by DuckDB itself (attached read-only);
any other SQLAlchemy URL (``sqlite:///file``, ``postgresql://host/db``…) is
read through SQLAlchemy in batches and sorted by DuckDB (which spills to disk
rather than holding a large result in memory). Relative file paths in
``duckdb:///`` and ``sqlite:///`` URLs are relative to the workspace.
"""

from __future__ import annotations

import datetime
import decimal
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from canon.declare.project import QuerySpec
from canon.digest import hash_file
from canon.errors import QueryError
from canon.executors.subsets import connect_duckdb
from canon.stores.objects import ObjectStore
from canon.stores.records import Content
from canon.urls import redact

__all__ = ["BATCH", "run_query"]

BATCH = 10_000
_AS_OF = re.compile(r"(?<![:\w]):as_of\b")
_FILE_URL = re.compile(r"^(duckdb|sqlite)(\+\w+)?:///(?!/)(.+)$")


def run_query(
    name: str, spec: QuerySpec, root: Path, store: ObjectStore | None, scratch: Path
) -> Content:
    """Run ``spec`` and store its canonical result in ``store`` (``None``: only
    digest it, as ``canon data status`` does to check the query is immutable)."""
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="query-", dir=scratch))
    try:
        out = work / f"result.{spec.format}"
        url = _absolute(spec.database, root)
        con = connect_duckdb(f"data.{name} (a query)")
        try:
            if url.startswith("duckdb:"):
                _load_duckdb(name, spec, url, con)
            else:
                _load_sqlalchemy(name, spec, url, con)
            options = "(FORMAT parquet)" if spec.format == "parquet" else "(FORMAT csv, HEADER)"
            con.execute(
                f"COPY (SELECT * FROM temp.result ORDER BY ALL) TO '{_quote(out)}' {options}"
            )
        except QueryError:
            raise
        except Exception as exc:
            raise _error(name, spec, exc) from exc
        finally:
            con.close()
        digest = hash_file(out) if store is None else store.add_file(out)
        return Content(digest, out.stat().st_size, 1, False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _absolute(url: str, root: Path) -> str:
    m = _FILE_URL.match(url)
    if m is None:
        return url
    engine, driver, path = m.group(1), m.group(2) or "", m.group(3)
    return f"{engine}{driver}:///{root / path}"


def _params(spec: QuerySpec) -> tuple[str, dict[str, Any]]:
    if _AS_OF.search(spec.text) is None:
        return spec.text, {}
    if spec.as_of is None:
        raise QueryError(
            "the query uses :as_of but the dataset declares no as_of",
            hint='add as_of: "2025-11-01" (or the snapshot your engine expects)',
        )
    return spec.text, {"as_of": spec.as_of}


def _load_duckdb(name: str, spec: QuerySpec, url: str, con: Any) -> None:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if path and path != ":memory:" and not Path(path).is_file():
        raise QueryError(
            f"data.{name}: the database {redact(spec.database)} does not exist",
            hint="create it, or point database: at the right file",
        )
    if path and path != ":memory:":
        con.execute(f"ATTACH '{_quote(Path(path))}' AS warehouse (READ_ONLY)")
        con.execute("USE warehouse")
    text, params = _params(spec)
    sql = _AS_OF.sub("$as_of", text).strip().rstrip(";")
    con.execute(f"CREATE TEMP TABLE result AS SELECT * FROM ({sql}) AS q", params)


def _load_sqlalchemy(name: str, spec: QuerySpec, url: str, con: Any) -> None:
    try:
        import sqlalchemy
    except ImportError as exc:
        raise QueryError(
            f"data.{name}: querying {redact(spec.database)} needs SQLAlchemy",
            hint="install it: pip install 'canon[warehouse]'",
        ) from exc
    m = _FILE_URL.match(url)
    if m is not None and m.group(1) == "sqlite" and not Path(m.group(3)).is_file():
        raise QueryError(
            f"data.{name}: the database {redact(spec.database)} does not exist",
            hint="create it, or point database: at the right file",
        )
    text, params = _params(spec)
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(
                sqlalchemy.text(text), params
            )
            columns = list(result.keys())
            created = False
            while rows := result.fetchmany(BATCH):
                if not created:
                    types = [_duck_type([r[i] for r in rows]) for i in range(len(columns))]
                    cols = ", ".join(
                        f'"{c.replace(chr(34), chr(34) * 2)}" {t}'
                        for c, t in zip(columns, types, strict=True)
                    )
                    con.execute(f"CREATE TEMP TABLE result ({cols})")
                    created = True
                marks = ", ".join("?" * len(columns))
                con.executemany(
                    f"INSERT INTO temp.result VALUES ({marks})", [tuple(r) for r in rows]
                )
            if not created:
                cols = ", ".join(f'"{c}" VARCHAR' for c in columns) or '"empty" VARCHAR'
                con.execute(f"CREATE TEMP TABLE result ({cols})")
    finally:
        engine.dispose()


def _duck_type(values: list[Any]) -> str:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, bool):
        return "BOOLEAN"
    if isinstance(sample, int):
        return "BIGINT"
    if isinstance(sample, float | decimal.Decimal):
        return "DOUBLE"
    if isinstance(sample, datetime.datetime):
        return "TIMESTAMP"
    if isinstance(sample, datetime.date):
        return "DATE"
    if isinstance(sample, bytes | bytearray | memoryview):
        return "BLOB"
    return "VARCHAR"


def _error(name: str, spec: QuerySpec, exc: BaseException) -> QueryError:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 400 else text[:397] + "..."
    # a driver's message can quote the URL it was given: never its credentials
    text = text.replace(spec.database, redact(spec.database))
    return QueryError(
        f"data.{name}: the query against {redact(spec.database)} failed: {text}",
        hint="check query:, database: and as_of: in canon.yaml",
    )


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
