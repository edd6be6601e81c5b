"""The stat cache: which digest a file or directory had when it last looked like this.

``.canon/state.db`` (SQLite, WAL, ``synchronous=NORMAL``) remembers, per
workspace path,

- files: ``path -> (inode, size, mtime_ns, hashed_ns, sha256)``, the sha256 as a
  32-byte BLOB (so a digest read back is well-formed by construction, with no
  per-row validation on the 50,000-row path),
- directories: ``path -> (fingerprint, digest, nfiles, size, hashed_ns)``, where
  the fingerprint is a hash of every file's ``(path, inode, size, mtime_ns,
  mode)`` (see ``canon.observe.content``),

so that a file is re-hashed only when its ``(inode, size, mtime_ns)`` changed,
and a directory whose fingerprint is unchanged is not even looked up per file.

Racy entries (Git's "racy-git" problem, Documentation/technical/racy-git.txt):
a file's mtime has the granularity of the filesystem's clock tick (ext4 takes
it from a coarse clock, a few ms; other filesystems up to 1-2 s). If a file is
modified after we stat and hash it but within the same tick, its
``(inode, size, mtime_ns)`` can be unchanged while its bytes differ. So an
entry is trusted only if the file's mtime is older than the moment it was
observed (``hashed_ns``, a wall-clock time taken *before* the stat) by more
than ``RACY_WINDOW_NS``: any later write would then have produced a later mtime.
A racy entry is still stored; the next observation re-hashes the file and,
being later, records a trusted entry. A file whose mtime is in the future
(clock skew, an archive's timestamps) is re-hashed until its mtime is past;
network filesystems whose clocks are more than the window apart are not
protected (Git compares against the index file's own mtime to dodge that).

It is only a cache: a damaged, garbage or unreadable ``state.db`` is deleted
and rebuilt, and if even that fails the cache lives in memory for this
process. No method raises because of the database; the worst case is a
re-hash. Writes are buffered and committed together by ``flush()`` (one
transaction), which ``close()`` calls. Thread-safe (one connection, one lock).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple, TypeVar

from canon.digest import PREFIX, Digest, hex_of, is_digest

RACY_WINDOW_NS = 50_000_000  # 50 ms: above every local filesystem's timestamp tick

_FILES = "stat_files_v2"
_DIRS = "stat_dirs_v1"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_FILES} (
    path TEXT PRIMARY KEY, inode INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, hashed_ns INTEGER NOT NULL, sha256 BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {_DIRS} (
    path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, digest TEXT NOT NULL,
    nfiles INTEGER NOT NULL, size INTEGER NOT NULL, hashed_ns INTEGER NOT NULL
) WITHOUT ROWID;
"""

# SQLite primary result codes that mean "this file is not a sound database".
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6

T = TypeVar("T")


class FileStat(NamedTuple):
    """The part of ``stat()`` that says "same file, unchanged"."""

    inode: int
    size: int
    mtime_ns: int


CachedStat = tuple[int, int, int, bytes | None]  # inode (as stored), size, mtime_ns, sha256


class CachedFile(NamedTuple):
    inode: int
    size: int
    mtime_ns: int
    hashed_ns: int
    sha256: bytes


class CachedDir(NamedTuple):
    fingerprint: str
    digest: Digest
    nfiles: int
    size: int
    hashed_ns: int


def is_racy(mtime_ns: int, hashed_ns: int) -> bool:
    """True if a write after ``hashed_ns`` could have left ``mtime_ns`` unchanged."""
    return mtime_ns >= hashed_ns - RACY_WINDOW_NS


def _i64(n: int) -> int:
    """``n`` folded into SQLite's signed 64-bit INTEGER (inodes are unsigned)."""
    return n - (1 << 64) if n >= (1 << 63) else n


def same_inode(stored: int, inode: int) -> bool:
    """True if ``stored`` (from ``files_under``) is ``inode``."""
    return stored == inode or stored == _i64(inode)


def trusted_digest(row: CachedFile | None, st: FileStat) -> Digest | None:
    """The cached digest if ``row`` describes this very file and is not racy."""
    if (
        row is None
        or row.inode != _i64(st.inode)
        or row.size != st.size
        or row.mtime_ns != st.mtime_ns
        or is_racy(row.mtime_ns, row.hashed_ns)
    ):
        return None
    return digest_of(row.sha256)


def digest_of(sha256: bytes) -> Digest:
    """The ``Digest`` of a raw 32-byte sha256 from ``files_under``."""
    return Digest(PREFIX + sha256.hex())


def _raw(d: Digest) -> bytes:
    return bytes.fromhex(hex_of(d))


class StatCache:
    """The stat cache in ``path`` (usually ``.canon/state.db``); ``None`` keeps it
    in memory (tests, read-only workspaces)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._files: list[tuple[str, int, int, int, int, bytes]] = []
        self._dirs: list[tuple[str, str, str, int, int, int]] = []
        self._forget: list[tuple[str]] = []
        self.rebuilt = False  # True if a damaged database was thrown away
        self._db = self._open()

    # -- connection ---------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return self._connect(str(self.path))
            except sqlite3.Error as exc:
                if _is_damage(exc):
                    self._discard_files()
                    self.rebuilt = True
                    with contextlib.suppress(sqlite3.Error, OSError):
                        return self._connect(str(self.path))
            except OSError:
                pass
        return self._connect(":memory:")

    def _connect(self, target: str) -> sqlite3.Connection:
        db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=2.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute(f"SELECT 1 FROM {_FILES} LIMIT 1").fetchall()
        except BaseException:
            db.close()
            raise
        return db

    def _discard_files(self) -> None:
        assert self.path is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                Path(str(self.path) + suffix).unlink()

    def _guard(self, op: Callable[[sqlite3.Connection], T], default: T) -> T:
        """Run ``op``; on a damaged database rebuild it, on any other database
        failure (busy, disk full, read-only) give up on caching: never raise."""
        with self._lock:
            try:
                return op(self._db)
            except sqlite3.Error as exc:
                if _is_busy(exc):  # another canon holds a write lock: skip, don't wait
                    return default
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                if _is_damage(exc) and self.path is not None:
                    self._discard_files()
                    self.rebuilt = True
                    self._db = self._open()
                else:
                    self._db = self._connect(":memory:")
                return default

    # -- files --------------------------------------------------------------------

    def file_digest(self, path: str, st: FileStat) -> Digest | None:
        """The trusted cached digest of the file at workspace path ``path``."""

        def op(db: sqlite3.Connection) -> CachedFile | None:
            row = db.execute(
                f"SELECT inode, size, mtime_ns, hashed_ns, sha256 FROM {_FILES} WHERE path = ?",
                (path,),
            ).fetchone()
            return _file_row(row)

        return trusted_digest(self._guard(op, None), st)

    def files_under(self, prefix: str) -> dict[str, CachedStat]:
        """Every cached file below directory ``prefix``, by workspace path, in one
        query: ``(inode, size, mtime_ns, sha256)`` with ``sha256`` (raw bytes, see
        ``digest_of``) ``None`` unless the entry may be trusted (not racy,
        well-formed), so a caller only compares stats. ``inode`` is as stored
        (see ``same_inode``)."""
        lo, hi = prefix + "/", prefix + "0"  # "0" sorts right after "/"

        def op(db: sqlite3.Connection) -> dict[str, CachedStat]:
            rows: list[tuple[str, int, int, int, bytes | None]] = db.execute(
                f"SELECT path, inode, size, mtime_ns, CASE WHEN mtime_ns < hashed_ns - ?"
                f" AND typeof(sha256) = 'blob' AND length(sha256) = 32 THEN sha256 END"
                f" FROM {_FILES} WHERE path >= ? AND path < ?",
                (RACY_WINDOW_NS, lo, hi),
            ).fetchall()
            return {r[0]: r[1:] for r in rows}

        return self._guard(op, {})

    def record_file(self, path: str, st: FileStat, digest: Digest, hashed_ns: int) -> None:
        """Remember ``digest`` for ``path`` as stat'ed by ``st`` at ``hashed_ns``
        (wall clock taken before the stat). Buffered until ``flush()``."""
        with self._lock:
            self._files.append(
                (path, _i64(st.inode), st.size, st.mtime_ns, hashed_ns, _raw(digest))
            )

    def record_files(self, files: Iterable[tuple[str, FileStat, Digest]], hashed_ns: int) -> None:
        """``record_file`` for many ``(path, stat, digest)`` at once."""
        n = len(PREFIX)
        fromhex = bytes.fromhex
        rows = [
            (p, _i64(st.inode), st.size, st.mtime_ns, hashed_ns, fromhex(d[n:]))
            for p, st, d in files
        ]
        with self._lock:
            self._files.extend(rows)

    def forget_files(self, paths: Iterable[str]) -> None:
        """Drop rows of files that no longer exist. Buffered until ``flush()``."""
        with self._lock:
            self._forget.extend((p,) for p in paths)

    # -- directories --------------------------------------------------------------

    def dir_files(self, path: str) -> int:
        """How many files directory ``path`` had when last recorded (0: never)."""

        def op(db: sqlite3.Connection) -> object:
            row = db.execute(f"SELECT nfiles FROM {_DIRS} WHERE path = ?", (path,)).fetchone()
            return None if row is None else row[0]

        n = self._guard(op, None)
        return n if isinstance(n, int) else 0

    def dir_entry(self, path: str, fingerprint: str, max_mtime_ns: int) -> CachedDir | None:
        """The cached directory if its fingerprint is unchanged and no file in it
        is racy (``max_mtime_ns``: the newest file mtime seen by this walk)."""

        def op(db: sqlite3.Connection) -> tuple[object, ...] | None:
            row: tuple[object, ...] | None = db.execute(
                f"SELECT fingerprint, digest, nfiles, size, hashed_ns FROM {_DIRS} WHERE path = ?",
                (path,),
            ).fetchone()
            return row

        row = self._guard(op, None)
        if row is None:
            return None
        fp, digest, nfiles, size, hashed_ns = row
        if (
            fp != fingerprint
            or not is_digest(digest)
            or not all(isinstance(v, int) for v in (nfiles, size, hashed_ns))
        ):
            return None
        assert isinstance(digest, str) and isinstance(hashed_ns, int)
        assert isinstance(nfiles, int) and isinstance(size, int)
        if is_racy(max_mtime_ns, hashed_ns):
            return None
        return CachedDir(fingerprint, Digest(digest), nfiles, size, hashed_ns)

    def record_dir(
        self, path: str, fingerprint: str, digest: Digest, nfiles: int, size: int, hashed_ns: int
    ) -> None:
        """Remember directory ``path``'s digest for this fingerprint. Buffered."""
        with self._lock:
            self._dirs.append((path, fingerprint, digest, nfiles, size, hashed_ns))

    # -- writing ------------------------------------------------------------------

    def flush(self) -> None:
        """Commit every buffered write in one transaction (dropped if the database fails)."""
        with self._lock:
            files, dirs, forget = self._files, self._dirs, self._forget
            self._files, self._dirs, self._forget = [], [], []
            if not (files or dirs or forget):
                return

            def op(db: sqlite3.Connection) -> None:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany(f"DELETE FROM {_FILES} WHERE path = ?", forget)
                    db.executemany(f"INSERT OR REPLACE INTO {_FILES} VALUES (?,?,?,?,?,?)", files)
                    db.executemany(f"INSERT OR REPLACE INTO {_DIRS} VALUES (?,?,?,?,?,?)", dirs)
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")

            self._guard(op, None)

    def close(self) -> None:
        with self._lock:
            self.flush()
            with contextlib.suppress(sqlite3.Error):
                self._db.close()

    def __enter__(self) -> StatCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def big_dirs(path: Path, at_least: int) -> list[str]:
    """Directories the stat cache at ``path`` last saw with ``at_least`` files, read
    without opening a ``StatCache`` (no write, no schema; ``[]`` on any problem): the
    walk starts on them before the rest of canon is even imported."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1)
    except sqlite3.Error:
        return []
    try:
        rows = db.execute(f"SELECT path FROM {_DIRS} WHERE nfiles >= ?", (at_least,)).fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()
    return [r[0] for r in rows if isinstance(r[0], str)]


def _file_row(row: tuple[object, ...] | None) -> CachedFile | None:
    if row is None or len(row) != 5:
        return None
    inode, size, mtime_ns, hashed_ns, sha256 = row
    if not (
        isinstance(inode, int)
        and isinstance(size, int)
        and isinstance(mtime_ns, int)
        and isinstance(hashed_ns, int)
        and isinstance(sha256, bytes)
        and len(sha256) == 32
    ):
        return None
    return CachedFile(inode, size, mtime_ns, hashed_ns, sha256)


def _code(exc: sqlite3.Error) -> int:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else -1


def _is_damage(exc: sqlite3.Error) -> bool:
    if _code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def _is_busy(exc: sqlite3.Error) -> bool:
    return _code(exc) in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in str(exc).lower()
