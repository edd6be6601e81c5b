"""What a workspace path holds: the read-only observer of files and directories.

``ContentReader(root, cache).content("data")`` answers "what is at ``data`` now?"
as a ``Content`` (digest, size, file count, file or directory) or ``None`` when
nothing is there; ``snapshot("data")`` also returns the directory's
``Manifest``, which is what the object store needs to store it. A file's
digest is the sha256 of its bytes; a directory's digest is its manifest's.

Speed. "Did anything change?" over a 50,000-file tree must cost about what
``git status`` does. A walk (``walk.py``: one ``stat`` per file, flat lists, a
second process for big trees) yields a *fingerprint*: sha256 over every
file's ``(path, inode, size, mtime_ns, mode)``. If it equals the fingerprint
the stat cache recorded for the directory, the cached digest is returned
without touching per-file rows. Otherwise per-file rows are read in one query, only files whose
``(inode, size, mtime_ns)`` changed (or are racy) are hashed — on every core
when there are many — and the manifest and the cache are rebuilt.

Safety. Symlinks are refused anywhere: as the path itself, as a component of
it, or inside a directory (a link could lead out of the workspace, and
following it would make the digest depend on things outside it); FIFOs,
sockets and devices are refused too. A file that changes while it is being
hashed is detected (its stat after hashing differs from the walk's) and the
observation starts again; after a few tries it fails with ``StateError``.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from canon.digest import Digest, hash_fd, run_on_cores
from canon.errors import PathError, StateError
from canon.observe.walk import LINK_HINT, SPLIT_AT, Changed, Walk
from canon.observe.walk import walk as walk_tree
from canon.stores.manifest import Manifest, ManifestEntry, normal_mode, path_problem
from canon.stores.records import Content
from canon.stores.statcache import FileStat, StatCache, digest_of, same_inode

__all__ = ["Content", "ContentReader", "Hasher", "digest_path", "hash_files"]

# Per file: its digest and (inode, size, mtime_ns) as of *after* reading, or None.
HashResult = tuple[Digest, int, int, int] | None
Hasher = Callable[[Sequence[str], Sequence[int]], list[HashResult]]

ATTEMPTS = 3  # walks of a directory that keeps changing under us, before giving up
_RESERVED = frozenset({".git", ".canon"})
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO must not hang us


class ContentReader:
    """Observes paths under ``root`` through one ``StatCache`` (one SQLite open for
    a whole observation). Not thread-safe; callers serialise (``Workspace`` does)."""

    def __init__(self, root: Path, cache: StatCache) -> None:
        self.root = root
        self.cache = cache
        # The last manifest built per tree, by walk fingerprint: a snapshot right after
        # an observation (plan, then apply) reuses it instead of building it again.
        self._built: dict[str, tuple[str, Manifest]] = {}
        # The last walk (tree, walk, when it began), for ``snapshot(..., just_observed=True)``;
        # only the last: a big tree's walk is megabytes, and an apply walks many trees.
        self._walked: tuple[str, Walk, int] | None = None

    def content(self, relpath: str, hasher: Hasher | None = None) -> Content | None:
        """What is at workspace path ``relpath`` (``None``: nothing). Fast when unchanged.
        ``hasher`` replaces the default for the files of a tree that must be hashed
        (the object store's ``hash_and_stage`` stores them as it hashes)."""
        snap = self._observe(relpath, want_manifest=False, hasher=hasher)
        return None if snap is None else snap[0]

    def snapshot(
        self, relpath: str, *, just_observed: bool = False
    ) -> tuple[Content, Manifest | None] | None:
        """``content`` plus, for a directory, its manifest (built from a walk, with
        unchanged files' digests from the stat cache). The walk is fresh unless
        ``just_observed``: the caller observed ``relpath`` a moment ago, as part of the
        same observation (status: a dataset's content, then its file list to compare
        with the pin), and that walk is reused."""
        if just_observed and self._walked is not None and self._walked[0] == relpath:
            _, walk, began_ns = self._walked
            try:
                return self._tree(relpath, True, began_ns, hash_files, walk)
            except Changed:
                pass  # a file changed since: observe afresh
        return self._observe(relpath, want_manifest=True)

    # -- dispatch -------------------------------------------------------------------

    def _observe(
        self, relpath: str, *, want_manifest: bool, hasher: Hasher | None = None
    ) -> tuple[Content, Manifest | None] | None:
        _check_relpath(relpath)
        for _ in range(ATTEMPTS):
            # The clock is read before the stat: see statcache's note on racy entries.
            observed_ns = time.time_ns()
            st = self._lstat_inside(relpath)
            if st is None:
                return None
            try:
                if stat.S_ISREG(st.st_mode):
                    return self._file(relpath, st, observed_ns), None
                return self._tree(relpath, want_manifest, observed_ns, hasher or hash_files)
            except Changed:
                continue
        raise StateError(
            f"{relpath} kept changing while canon was reading it",
            hint="wait until whatever writes to it has finished, then run again",
        )

    def _lstat_inside(self, relpath: str) -> os.stat_result | None:
        """lstat of ``relpath``, refusing a symlink at it or at any parent component."""
        parts = relpath.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            try:
                st = os.lstat(self.root / sub)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                raise PathError(f"cannot read {sub}: {exc.strerror}") from exc
            if stat.S_ISLNK(st.st_mode):
                raise PathError(f"{sub} is a symbolic link", hint=LINK_HINT)
            if i < len(parts) and not stat.S_ISDIR(st.st_mode):
                return None  # a parent is a file: nothing can be at relpath
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise PathError(f"{relpath} is not a regular file or directory", hint=_SPECIAL_HINT)
        return st

    # -- one file -------------------------------------------------------------------

    def _file(self, relpath: str, st: os.stat_result, hashed_ns: int) -> Content:
        key = FileStat(st.st_ino, st.st_size, st.st_mtime_ns)
        digest = self.cache.file_digest(relpath, key)
        if digest is None:
            res = _hash_checked([str(self.root / relpath)])[0]
            if res is None or FileStat(res[1], res[2], res[3]) != key:
                raise Changed
            digest = res[0]
            self.cache.record_file(relpath, key, digest, hashed_ns)
            self.cache.flush()
        return Content(digest, st.st_size, 1, False)

    # -- one directory --------------------------------------------------------------

    def _tree(
        self,
        relpath: str,
        want_manifest: bool,
        hashed_ns: int,
        hasher: Hasher,
        walk: Walk | None = None,
    ) -> tuple[Content, Manifest | None]:
        if walk is None:
            split = self.cache.dir_files(relpath) >= SPLIT_AT
            walk = walk_tree(str(self.root / relpath), relpath, split=split)
            self._walked = (relpath, walk, hashed_ns)
        if not want_manifest:
            hit = self.cache.dir_entry(relpath, walk.fingerprint, walk.max_mtime_ns)
            if hit is not None and hit.nfiles == walk.nfiles and hit.size == walk.size:
                return Content(hit.digest, hit.size, hit.nfiles, True), None
        built = self._built.get(relpath)
        if built is not None and built[0] == walk.fingerprint:
            manifest = built[1]  # same files, same (inode, size, mtime): same manifest
        else:
            manifest = self._manifest(relpath, walk, hashed_ns, hasher)
            self._built[relpath] = (walk.fingerprint, manifest)
        self.cache.record_dir(
            relpath, walk.fingerprint, manifest.digest, walk.nfiles, walk.size, hashed_ns
        )
        self.cache.flush()
        return Content(manifest.digest, walk.size, walk.nfiles, True), manifest

    def _manifest(self, relpath: str, walk: Walk, hashed_ns: int, hasher: Hasher) -> Manifest:
        # Flat lists and no per-file objects: this loop runs once per file of the tree.
        rows = self.cache.files_under(relpath)
        pop = rows.pop
        top = relpath + "/"
        paths: list[str] = []
        inos: list[int] = []
        sizes: list[int] = []
        mtimes: list[int] = []
        modes: list[int] = []
        digests: list[Digest | None] = []
        is_reg = stat.S_ISREG
        for listing in walk.listings:
            ints, rel = listing.stats, listing.rel
            for i, name in enumerate(listing.names):
                ino, size, mtime_ns, mode = ints[4 * i : 4 * i + 4]
                if not is_reg(mode):
                    _refuse(top + rel + name, mode)
                path = rel + name
                paths.append(path)
                inos.append(ino)
                sizes.append(size)
                mtimes.append(mtime_ns)
                modes.append(mode)
                row = pop(top + path, None)
                if (
                    row is not None
                    and row[3] is not None  # None: the entry is racy
                    and row[1] == size
                    and row[2] == mtime_ns
                    and same_inode(row[0], ino)
                ):
                    digests.append(digest_of(row[3]))
                else:
                    digests.append(None)
        missing = [j for j, d in enumerate(digests) if d is None]
        if missing:
            abs_top = str(self.root / relpath) + "/"
            todo = [abs_top + paths[j] for j in missing]
            found = hasher(todo, [sizes[j] for j in missing])
            fresh: list[tuple[str, FileStat, Digest]] = []
            for j, res in zip(missing, found, strict=True):
                key = FileStat(inos[j], sizes[j], mtimes[j])
                if res is None or (res[1], res[2], res[3]) != key:
                    raise Changed
                digests[j] = res[0]
                fresh.append((top + paths[j], key, res[0]))
            self.cache.record_files(fresh, hashed_ns)
        self.cache.forget_files(rows)  # rows left over: files that are gone
        entries = [
            ManifestEntry(p, n, normal_mode(m), d)
            for p, n, m, d in zip(paths, sizes, modes, digests, strict=True)
            if d is not None
        ]
        return Manifest.build(entries, where=relpath)


def hash_files(paths: Sequence[str], sizes: Sequence[int]) -> list[HashResult]:
    """The default hasher: read-only, on every core."""
    return run_on_cores(_hash_checked, paths, sizes)


def digest_path(root: Path, relpath: str, cache: StatCache) -> Content | None:
    """What is at ``relpath`` under ``root`` (``None``: nothing); see ``ContentReader``."""
    return ContentReader(root, cache).content(relpath)


def _hash_checked(paths: Sequence[str]) -> list[HashResult]:
    """Per path: digest and ``(inode, size, mtime_ns)`` as of *after* hashing, or
    ``None`` if it could not be read. A caller compares that stat with the one it
    saw before, to catch files that changed mid-hash. Runs in worker processes."""
    out: list[tuple[Digest, int, int, int] | None] = []
    for p in paths:
        try:
            fd = os.open(p, _FILE_FLAGS)
        except OSError:
            out.append(None)
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                out.append(None)
                continue
            digest, _ = hash_fd(fd)
            st = os.fstat(fd)
            out.append((digest, st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
        finally:
            os.close(fd)
    return out


# -- refusals -------------------------------------------------------------------------

_SPECIAL_HINT = "canon records regular files and directories only (no FIFOs, sockets, devices)"


def _refuse(path: str, mode: int) -> None:
    if stat.S_ISLNK(mode):
        raise PathError(f"{path} is a symbolic link", hint=LINK_HINT)
    raise PathError(f"{path} is not a regular file or directory", hint=_SPECIAL_HINT)


def _check_relpath(relpath: str) -> None:
    problem = path_problem(relpath)
    if problem is not None:
        raise PathError(
            f"{relpath!r} is not a workspace path: it {problem}",
            hint="use a relative path inside the project, like data/train",
        )
    first = relpath.split("/", 1)[0]
    if first in _RESERVED:
        raise PathError(f"{relpath} is inside {first}, which canon does not track")
