"""push, fetch and pull: moving objects between the cache and a remote.

Push (only what the remote lacks, in parallel):

1. one listing of the remote (``Catalog``); if the local record says every
   root was complete at this very listing, stop: nothing to do;
2. expand the roots (directory manifests read, verified, from the cache) and
   read the remote's pack indexes (cached locally; immutable);
3. upload, in two phases so that nothing is referenced before it is
   complete: **files** first — small objects grouped into packs (each pack
   uploaded, then its index), big ones whole — and only after every file is
   on the remote, the **manifests** that name them. Every object is re-hashed
   as it is read from the cache: a corrupt local object never reaches a remote.

A push killed at any point leaves complete packs (visible once their index
is) and at worst a pack without an index (invisible, rewritten under the same
name next time); the rerun lists the remote and uploads only what is missing.

Fetch downloads what the cache lacks: manifests first (they say which files
a directory needs), then files. Packed objects are read with ranged GETs
(neighbours coalesced, each read bounded in size), whole ones streamed to a
temp file; every object is re-hashed before it enters the cache
(``IntegrityError`` otherwise, and nothing stored). A fetch whose objects are
all in the cache never contacts the remote. Pull = fetch + restore of the
workspace paths the lock records (missing ones; ``force`` also replaces ones
that differ).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from canon import failpoints
from canon.digest import Digest, run_on_cores
from canon.errors import CanonError, IntegrityError, RemoteMissingError, StateError
from canon.events import Emit, Notice, TransferFinished, TransferProgress, TransferStarted
from canon.stores.manifest import Manifest
from canon.stores.objects import ObjectStore
from canon.stores.packs import (
    SMALL_OBJECT,
    PackBuilder,
    PackEntry,
    Window,
    plan_packs,
    read_windows,
)
from canon.stores.references import Root, expand
from canon.stores.remotes import shareable
from canon.stores.remotes.catalog import Catalog, Location
from canon.stores.remotes.protocol import Remote, index_key, object_key, pack_key


@dataclass
class TransferResult:
    direction: str
    objects: int = 0
    size: int = 0
    requests: int = 0
    present: int = 0
    duration: float = 0.0
    restored: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # pull: paths that differ, left alone


class Transfer:
    """Moves objects between ``store`` and ``remote``; ``record_dir`` holds the
    local record of the remote (``Catalog``)."""

    def __init__(
        self, store: ObjectStore, remote: Remote, record_dir: Path, emit: Emit, *, jobs: int = 8
    ) -> None:
        self.store = store
        self.remote = remote
        self.record_dir = record_dir
        self.emit = emit
        self.jobs = max(1, jobs)
        self._guard = threading.Lock()

    # -- push -----------------------------------------------------------------------

    def push(self, roots: Sequence[Root]) -> TransferResult:
        t0 = time.monotonic()
        result = TransferResult("push")
        catalog = Catalog.list_only(self.remote, self.record_dir)
        known = catalog.complete_roots()
        if roots and all(r.digest in known for r in roots):
            return self._finish(result, t0)
        manifests, files = self._expand_local(roots)
        catalog.read_indexes(jobs=self.jobs)
        todo_files = {d: s for d, s in files.items() if not catalog.has(d)}
        todo_manifests = {d: s for d, s in manifests.items() if not catalog.has(d)}
        result.present = len(files) + len(manifests) - len(todo_files) - len(todo_manifests)
        total = sum(todo_files.values()) + sum(todo_manifests.values())
        self.emit(
            TransferStarted(
                "push", self.remote.display, len(todo_files) + len(todo_manifests), total
            )
        )
        self._upload(todo_files, result)
        failpoints.hit("push.before_manifests")
        self._upload(todo_manifests, result)  # only now: every file they name is there
        after = Catalog.list_only(self.remote, self.record_dir)
        after.remember(after.fingerprint, [*known, *(r.digest for r in roots)])
        return self._finish(result, t0)

    def _expand_local(self, roots: Sequence[Root]) -> tuple[dict[Digest, int], dict[Digest, int]]:
        manifests: dict[Digest, int] = {}
        files: dict[Digest, int] = {}
        trees: list[Manifest] = []
        missing: list[str] = []
        for r in roots:
            if r.is_dir:
                if not self.store.has(r.digest):
                    missing.append(r.address)
                    continue
                m = self.store.manifest(r.digest)
                trees.append(m)
                manifests[r.digest] = len(m.to_bytes())
            else:
                files[r.digest] = r.size
        files.update(expand(trees))
        if missing:
            raise StateError(
                f"cannot push {', '.join(missing[:5])}: not in the local cache",
                hint="fetch it from the remote that has it, or run `canon apply` to rebuild it",
            )
        return manifests, files

    def _upload(self, todo: dict[Digest, int], result: TransferResult) -> None:
        if not todo:
            return
        small = sorted((d, s) for d, s in todo.items() if s <= SMALL_OBJECT)
        big = sorted(d for d, s in todo.items() if s > SMALL_OBJECT)
        groups = plan_packs(small)
        tasks: list[Callable[[], None]] = []
        target = shareable(self.remote) if self.jobs > 1 and len(groups) > 1 else None
        if target is None:
            tasks += [partial(self._push_pack, group, result) for group in groups]
        else:
            # Building a pack is CPU work (read + re-hash every object, hash the pack):
            # threads would queue on the GIL, so a directory remote gets one process per
            # core, each writing whole packs (a pack, one fsync, then its index). Run
            # from this thread, before any pool thread exists: fork stays safe.
            self._push_packs_on_cores(target, groups, todo, result)
        tasks += [partial(self._push_whole, d, todo[d], result) for d in big]
        self._run(tasks)

    def _push_pack(self, group: list[Digest], result: TransferResult) -> None:
        size = _put_pack(self.store, self.remote, group)
        self._progress("push", len(group), size, result, requests=2)

    def _push_packs_on_cores(
        self,
        target: Remote,
        groups: list[list[Digest]],
        sizes: dict[Digest, int],
        result: TransferResult,
    ) -> None:
        jobs = [(self.store.root, target, group) for group in groups]
        weights = [sum(sizes[d] for d in g) + len(g) * 4096 for g in groups]
        for group, size in zip(groups, run_on_cores(_put_packs, jobs, weights), strict=True):
            self._progress("push", len(group), size, result, requests=2)

    def _push_whole(self, d: Digest, size: int, result: TransferResult) -> None:
        if not self.store.verify(d):
            raise IntegrityError(
                f"object {d} in the cache is missing or corrupt; not pushing it",
                hint="run `canon cache verify --repair`",
            )
        self.remote.put_file(object_key(d), self.store.path_of(d))
        self._progress("push", 1, size, result, requests=1)

    # -- fetch / pull ---------------------------------------------------------------------

    def fetch(self, roots: Sequence[Root]) -> TransferResult:
        t0 = time.monotonic()
        result = TransferResult("fetch")
        self._fetch(roots, result)
        return self._finish(result, t0)

    def pull(
        self,
        roots: Sequence[Root],
        root_dir: Path,
        current: Callable[[str], Digest | None],
        *,
        force: bool = False,
    ) -> TransferResult:
        """fetch, then restore the workspace paths (see ``restore``)."""
        t0 = time.monotonic()
        result = TransferResult("pull")
        seen: dict[str, Digest | None] = {}

        def now(path: str) -> Digest | None:
            if path not in seen:
                seen[path] = current(path)
            return seen[path]

        # A root already in the workspace (its observed digest is the lock's) needs
        # neither a download nor a restore: a no-op pull costs one stat-cached walk.
        todo = [r for r in roots if r.path is None or now(r.path) != r.digest]
        self._fetch(todo, result)
        self.restore(todo, root_dir, now, result, force=force)
        return self._finish(result, t0)

    def _fetch(self, roots: Sequence[Root], result: TransferResult) -> None:
        manifests = [r.digest for r in roots if r.is_dir]
        plain = {r.digest: r.size for r in roots if not r.is_dir}
        absent = self.store.absent
        need = {d: plain[d] for d in absent(list(plain))}
        need.update({d: 0 for d in absent(manifests)})
        have_trees = [self.store.manifest(d) for d in manifests if d not in need]
        files = expand(have_trees)
        need.update({d: files[d] for d in absent(list(files))})
        result.present = len(plain) + len(manifests) + len(files) - len(need)
        if not need:
            return  # the remote is never contacted
        catalog = Catalog.load(self.remote, self.record_dir, jobs=self.jobs)
        self.emit(TransferStarted("fetch", self.remote.display, len(need), sum(need.values())))
        first = {d: s for d, s in need.items() if d in plain or d in manifests}
        self._download(first, catalog, result)
        new_trees = [self.store.manifest(d) for d in manifests if d in first]
        rest = {d: s for d, s in need.items() if d not in first}
        more = expand(new_trees)
        rest.update({d: more[d] for d in self.store.absent(list(more))})
        self._download(rest, catalog, result)

    def restore(
        self,
        roots: Sequence[Root],
        root_dir: Path,
        current: Callable[[str], Digest | None],
        result: TransferResult,
        *,
        force: bool = False,
    ) -> None:
        """Put each root with a workspace path in place when it is missing (or, with
        ``force``, when it differs); ``current(path)`` is what is there now."""
        for r in roots:
            if r.path is None:
                continue
            now = current(r.path)
            if now == r.digest:
                continue
            if now is not None and not force:
                result.kept.append(r.path)
                self.emit(
                    Notice(f"{r.path} differs from the lock; kept (pull --force replaces it)")
                )
                continue
            try:
                self.store.restore(r.digest, root_dir / r.path, is_dir=r.is_dir)
            except IntegrityError as exc:  # a damaged object in the local cache
                raise IntegrityError(
                    f"cannot restore {r.path}: {exc.message}",
                    hint="`canon cache verify --repair` removes damaged objects and re-fetches "
                    "them from the remote; then `canon pull` again",
                ) from exc
            result.restored.append(r.path)

    def _download(self, need: dict[Digest, int], catalog: Catalog, result: TransferResult) -> None:
        if not need:
            return
        by_pack: dict[str, list[tuple[Digest, Location]]] = {}
        whole: list[tuple[Digest, Location]] = []
        absent: list[Digest] = []
        for d in sorted(need):
            loc = catalog.locate(d)
            if loc is None:
                absent.append(d)
            elif loc.pack is None:
                whole.append((d, loc))
            else:
                by_pack.setdefault(loc.key, []).append((d, loc))
        bad: list[Digest] = []
        tasks: list[Callable[[], None]] = []
        windows = [
            (key, w)
            for key, items in by_pack.items()
            for w in read_windows([PackEntry(d, loc.offset, loc.length) for d, loc in items])
        ]
        source = shareable(self.remote) if self.jobs > 1 and len(windows) > 1 else None
        if source is None:
            tasks += [partial(self._fetch_window, key, w, bad, result) for key, w in windows]
        else:
            # As for push: checking and storing a window's objects is CPU work, so a
            # directory remote gets one process per core (started before any thread).
            self._fetch_windows_on_cores(source, windows, bad, result)
        tasks += [partial(self._fetch_whole, d, loc, bad, result) for d, loc in whole]
        self._run(tasks)
        if bad:
            raise IntegrityError(
                f"{len(bad)} object(s) from remote {self.remote.display} do not match their "
                f"digest (first: {bad[0]}); none of them entered the cache",
                hint="the remote copy is damaged: run `canon push` from a machine that has "
                "good copies (a push re-uploads what is missing), then pull again",
            )
        if absent:
            raise RemoteMissingError(
                f"{len(absent)} object(s) the lock needs are not on remote "
                f"{self.remote.display} (first: {absent[0]})",
                hint="push them from the machine that produced them (`canon push`), "
                "or pull from another remote with -r",
            )

    def _fetch_window(self, key: str, w: Window, bad: list[Digest], result: TransferResult) -> None:
        failed = _get_window(self.store, self.remote, key, w)
        with self._guard:
            bad.extend(failed)
        self._progress("fetch", len(w.entries), w.end - w.start, result, requests=1)

    def _fetch_windows_on_cores(
        self,
        source: Remote,
        windows: list[tuple[str, Window]],
        bad: list[Digest],
        result: TransferResult,
    ) -> None:
        jobs = [(self.store.root, source, key, w) for key, w in windows]
        weights = [w.end - w.start + len(w.entries) * 4096 for _, w in windows]
        for (_, w), failed in zip(windows, run_on_cores(_get_windows, jobs, weights), strict=True):
            bad.extend(failed)
            self._progress("fetch", len(w.entries), w.end - w.start, result, requests=1)

    def _fetch_whole(
        self, d: Digest, loc: Location, bad: list[Digest], result: TransferResult
    ) -> None:
        try:
            self.store.add_expected(d, lambda write: self.remote.get_file(loc.key, write))
        except IntegrityError:
            with self._guard:
                bad.append(d)
            return
        self._progress("fetch", 1, loc.length, result, requests=1)

    # -- plumbing -------------------------------------------------------------------------

    def _run(self, tasks: Iterable[Callable[[], None]]) -> None:
        """Run every task on the pool; after all finished, raise the first failure."""
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures: list[Future[None]] = [pool.submit(t) for t in tasks]
            for f in futures:
                exc = f.exception()
                if exc is not None:
                    errors.append(exc)
        if errors:
            first = next((e for e in errors if isinstance(e, CanonError)), errors[0])
            raise first

    def _progress(
        self, direction: str, n: int, size: int, result: TransferResult, *, requests: int
    ) -> None:
        with self._guard:
            result.objects += n
            result.size += size
            result.requests += requests
        self.emit(TransferProgress(direction, n, size))

    def _finish(self, result: TransferResult, t0: float) -> TransferResult:
        result.duration = time.monotonic() - t0
        self.emit(
            TransferFinished(
                result.direction,
                self.remote.display,
                result.objects,
                result.size,
                result.requests,
                result.present,
                result.duration,
                tuple(result.restored),
            )
        )
        return result


def _put_pack(store: ObjectStore, remote: Remote, group: Sequence[Digest]) -> int:
    """Build one pack of ``group`` (every object re-hashed as it is read: a bad
    object never reaches a remote), upload it, then its index; the pack's size."""
    builder = PackBuilder()
    for d in group:
        builder.add(d, store.read_verified(d))
    data, index = builder.finish()
    remote.put_bytes(pack_key(index.pack), data)
    failpoints.hit("push.after_pack")
    remote.put_bytes(index_key(index.pack), index.render())
    return len(data)


def _get_window(store: ObjectStore, remote: Remote, key: str, w: Window) -> list[Digest]:
    """Read one window of a pack and store its objects, each re-hashed; the digests
    whose bytes did not match (none of them stored)."""
    data = remote.get_bytes(key, w.start, w.end)
    view = memoryview(data)
    items = [
        (e.digest, bytes(view[e.offset - w.start : e.offset - w.start + e.length]))
        for e in w.entries
    ]
    return store.add_verified_many(items)


def _get_windows(jobs: Sequence[tuple[Path, Remote, str, Window]]) -> list[list[Digest]]:
    """``_get_window`` for each job, in a worker process (``run_on_cores``)."""
    return [_get_window(_worker_store(root), remote, key, w) for root, remote, key, w in jobs]


_worker_stores: dict[Path, ObjectStore] = {}


def _worker_store(root: Path) -> ObjectStore:
    store = _worker_stores.get(root)
    if store is None:
        store = _worker_stores[root] = ObjectStore(root)
    return store


def _put_packs(jobs: Sequence[tuple[Path, Remote, list[Digest]]]) -> list[int]:
    """``_put_pack`` for each job, in a worker process (``run_on_cores``). Jobs name
    the cache by its root (a store's in-memory indexes are not worth pickling); each
    worker opens it once."""
    return [_put_pack(_worker_store(root), remote, group) for root, remote, group in jobs]
