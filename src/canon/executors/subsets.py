"""Make a declared subset from its parent's *pinned* content.

- A directory parent: ``sample`` keeps each file whose
  ``sha256(seed, path)`` falls below the fraction — a new manifest naming the
  same objects (nothing is copied). ``filter`` needs a table, not a directory.
- A CSV or Parquet file parent: rows are kept when
  ``md5(seed, the row as text)`` falls below the fraction (``sample``) and the
  ``filter`` SQL expression holds, in the file's row order, by DuckDB with one
  thread. The choice depends only on each row's content and the seed, so it
  is the same on every machine and stable when rows are appended upstream.

The same pinned parent, spec and engine version give the same bytes; the
lock records all three, so a run on a laptop subset says exactly what it ran
on and can be reproduced from the full data.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from canon.declare.project import SubsetSpec
from canon.errors import DataError
from canon.stores.manifest import Manifest
from canon.stores.objects import ObjectStore
from canon.stores.records import Content

__all__ = ["TABLE_SUFFIXES", "connect_duckdb", "make_subset", "subset_spec"]

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_HEX = 8  # hex digits of the hash compared with the threshold: 32 bits


def connect_duckdb(what: str) -> Any:
    """An in-memory DuckDB connection, one thread (deterministic output)."""
    try:
        import duckdb
    except ImportError as exc:
        raise DataError(
            f"{what} needs DuckDB", hint="install it: pip install 'canon[warehouse]'"
        ) from exc
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute("SET preserve_insertion_order = true")
    return con


def subset_spec(spec: SubsetSpec) -> dict[str, Any]:
    """What the lock records about how a subset was made."""
    out: dict[str, Any] = {"seed": spec.seed}
    if spec.sample is not None:
        out["sample"] = spec.sample
    if spec.filter is not None:
        out["filter"] = spec.filter
    return out


def make_subset(
    name: str, spec: SubsetSpec, parent: Content, basename: str, store: ObjectStore, scratch: Path
) -> Content:
    """Store the subset of ``parent`` (pinned, in ``store``); its content."""
    if parent.is_dir:
        if spec.filter is not None:
            raise DataError(
                f"data.{name}: filter needs a CSV or Parquet file, but data.{spec.parent} "
                "is a directory",
                hint="use sample: alone for a directory (a fraction of its files)",
            )
        return _sample_tree(name, spec, store.manifest(parent.digest), store)
    fmt = TABLE_SUFFIXES.get(Path(basename).suffix.lower())
    if fmt is None:
        raise DataError(
            f"data.{name}: cannot take rows of {basename}: not a .csv or .parquet file",
            hint="subsets of single files work on CSV and Parquet tables",
        )
    if spec.filter is not None and ";" in spec.filter:
        raise DataError(f"data.{name}: filter must be one SQL expression (no ';')")
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="subset-", dir=scratch))
    try:
        source = work / f"in{Path(basename).suffix}"
        store.restore(parent.digest, source, is_dir=False)  # verified copy
        out = work / f"out{Path(basename).suffix}"
        _sample_table(name, spec, source, out, fmt, basename)
        digest = store.add_file(out)
        return Content(digest, out.stat().st_size, 1, False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _keep_file(seed: int, path: str, fraction: float) -> bool:
    h = hashlib.sha256(f"{seed}\x00{path}".encode()).digest()
    return int.from_bytes(h[:8], "big") < fraction * (1 << 64)


def _sample_tree(name: str, spec: SubsetSpec, manifest: Manifest, store: ObjectStore) -> Content:
    fraction = 1.0 if spec.sample is None else spec.sample
    kept = [e for e in manifest if _keep_file(spec.seed, e.path, fraction)]
    if not kept:
        raise DataError(
            f"data.{name}: sample {fraction} of data.{spec.parent} kept no file "
            f"(it has {len(manifest)})",
            hint="raise sample:, or change seed:",
        )
    sub = Manifest.build(kept)
    store.add_bytes(sub.to_bytes())
    return Content(sub.digest, sub.size, len(sub), True)


def _sample_table(
    name: str, spec: SubsetSpec, source: Path, out: Path, fmt: str, basename: str
) -> None:
    con = connect_duckdb(f"data.{name} (a subset of a table)")
    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    conditions = []
    if spec.sample is not None and spec.sample < 1:
        threshold = f"{int(spec.sample * 16**_HEX):0{_HEX}x}"
        conditions.append(
            f"substr(md5('{int(spec.seed)}' || chr(31) || CAST(t AS VARCHAR)), 1, {_HEX}) "
            f"< '{threshold}'"
        )
    if spec.filter is not None:
        conditions.append(f"({spec.filter})")
    where = " AND ".join(conditions) or "true"
    options = "(FORMAT parquet)" if fmt == "parquet" else "(FORMAT csv, HEADER)"
    sql = (
        f"COPY (SELECT * FROM {reader}('{_quote(source)}') AS t WHERE {where}) "
        f"TO '{_quote(out)}' {options}"
    )
    try:
        con.execute(sql)
    except Exception as exc:  # duckdb.Error and friends: the user's filter, or the file
        raise DataError(
            f"data.{name}: cannot take the subset of {basename}: {' '.join(str(exc).split())}",
            hint="check filter: (a SQL boolean expression over the table's columns)",
        ) from exc
    finally:
        con.close()


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
