"""The content-addressed object store in ``.canon/cache``.

Layout: ``sha256/ab/cdef…`` holds the object whose digest is ``sha256:abcdef…``;
``tmp/`` holds objects being written. A directory is stored as its files'
objects plus its manifest (``canon.stores.manifest``), an object too, stored
last. Objects are read-only (``0o444``).

Invariant (RELIABILITY.md 1): no object is visible under its final name unless
its bytes hash to it. Every write goes to a fresh temp file in ``tmp/``, is
hashed *as it is written* (the bytes hashed are the bytes stored), checked,
made durable and only then renamed into place. A crash leaves at worst a temp
file (``prune_temp``); a rerun redoes the work. Concurrent writers of one object
are safe: each has its own temp file, and ``rename`` swaps identical bytes.

Durability of a tree without 50,000 fsyncs: ``add_tree`` writes every temp file,
calls ``syncfs(2)`` once for the cache's filesystem (``os.sync()`` where it is
missing), renames them all, syncs again, and only then writes the manifest
(fsynced). A manifest is never visible before the objects it names. The cost:
``syncfs`` also flushes other processes' dirty data on that filesystem.

Reads verify: ``read_verified``, ``verify`` and ``restore`` re-hash every byte
(``IntegrityError`` naming the digest). ``restore`` builds the file or tree in a
temp sibling of its destination and swaps it in with one rename
(``renameat2(RENAME_EXCHANGE)`` over a directory): the destination is the old
content or the complete, verified new one. Copies use reflinks (``FICLONE``)
where the filesystem has them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from canon import failpoints
from canon.digest import (
    PREFIX,
    Digest,
    hash_bytes,
    hash_file,
    hex_of,
    is_digest,
    parse_digest,
    run_on_cores,
)
from canon.errors import IntegrityError, PathError, StateError
from canon.stores.atomic import fsync_dir
from canon.stores.fsops import discard, remove, rmdirs, swap_in, syncfs, unlink, write_all
from canon.stores.manifest import MODE_FILE, Manifest
from canon.stores.objectio import (
    OBJECT_MODE,
    copy_hashing,
    copy_object,
    hash_and_pack,
    open_source,
    pack_chunk,
    restore_chunk,
    store_chunk,
)
from canon.stores.packs import (
    PACK_MAGIC,
    SMALL_OBJECT,
    PackEntry,
    PackIndex,
    plan_packs,
)
from canon.stores.packset import (
    PACK_MIN_OBJECTS,
    Packed,
    PackSet,
    PackWriter,
    Slot,
    StagedPack,
    pack_name,
    read_slot,
)

_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHANGED_HINT = "run again once nothing is writing to it"


class ObjectStore:
    """Objects under ``root`` (usually ``.canon/cache``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "sha256"
        self.tmp = root / "tmp"
        self._prefix = str(self.objects) + "/"  # strings, not Paths: has() runs 10^5 times
        self.packs = PackSet(root / "packs")
        # Packs written by ``hash_and_stage`` but not yet visible: temp path -> layout.
        self._staged: dict[str, list[tuple[int, int, Digest]]] = {}
        self._staged_lock = threading.Lock()

    def path_of(self, d: Digest) -> Path:
        """Where object ``d`` lives (``StateError`` if ``d`` is not a digest)."""
        return Path(self._path(d))

    def _path(self, d: Digest) -> str:
        h = hex_of(parse_digest(d))
        return f"{self._prefix}{h[:2]}/{h[2:]}"

    def has(self, d: Digest) -> bool:
        """True if object ``d`` is present (not re-hashed: see ``verify``); False for
        anything that is not a digest."""
        if not is_digest(d):
            return False
        try:
            return stat.S_ISREG(os.stat(self._path(d)).st_mode)
        except OSError:
            return self.packs.locate(hex_of(d)) is not None

    def _where(self, d: Digest) -> tuple[str, int, int]:
        """Where to read object ``d``: its pack and slot, else its loose file
        (offset -1; "missing" when that is absent too)."""
        slot = self.packs.locate(hex_of(parse_digest(d)))
        if slot is not None:
            return slot
        return self._path(d), -1, -1

    def absent(self, digests: Sequence[Digest]) -> list[Digest]:
        """Which of ``digests`` are in neither a pack nor a loose file. Packs first
        (a dict lookup); then, for many digests, one listing of the loose shards
        instead of a failed ``stat`` per object."""
        packed = self.packs.locate_many(hex_of(d) for d in digests)
        rest = [d for d in digests if hex_of(d) not in packed]
        if len(rest) < 1000:
            return [d for d in rest if not self._is_loose(d)]
        try:
            shards = os.listdir(self.objects)
        except FileNotFoundError:
            return rest
        loose: set[str] = set()
        for shard in shards:
            with contextlib.suppress(OSError):
                loose.update(shard + name for name in os.listdir(self._prefix + shard))
        return [d for d in rest if hex_of(d) not in loose]

    def _is_loose(self, d: Digest) -> bool:
        try:
            return stat.S_ISREG(os.stat(self._path(d)).st_mode)
        except OSError:
            return False

    def add_bytes(self, data: bytes) -> Digest:
        """Store ``data``; its digest."""
        d = hash_bytes(data)
        if not self.has(d):

            def fill(fd: int) -> Digest:
                write_all(fd, memoryview(data))
                return d

            self._publish(self._stage(fill)[0], d)
        return d

    def add_file(self, src: Path, expected: Digest | None = None) -> Digest:
        """Store the regular file ``src``; its digest. ``IntegrityError`` if
        ``expected`` is given and the file's bytes are something else (it changed
        since it was observed). Skips the copy if ``expected`` is already here."""
        if expected is not None and self.has(expected):
            return parse_digest(expected)
        tmp, d = self._stage(lambda fd: copy_hashing(open_source(src), fd))
        if expected is not None and d != expected:
            unlink(tmp)
            raise IntegrityError(
                f"{src} hashes to {d}, not {expected}: it changed after canon looked at it",
                hint=_CHANGED_HINT,
            )
        if self.has(d):
            unlink(tmp)
        else:
            self._publish(tmp, d)
        return d

    def add_stream(self, chunks: Iterable[bytes]) -> tuple[Digest, int]:
        """Store the bytes ``chunks`` yields (a download, a query result), hashed
        as they are written: memory stays at one chunk. Its digest and size."""
        size = 0

        def fill(fd: int) -> Digest:
            nonlocal size
            h = hashlib.sha256()
            for chunk in chunks:
                h.update(chunk)
                write_all(fd, memoryview(chunk))
                size += len(chunk)
            return Digest(PREFIX + h.hexdigest())

        tmp, d = self._stage(fill)
        if self.has(d):
            unlink(tmp)
        else:
            self._publish(tmp, d)
        return d, size

    def add_tree(self, src_dir: Path, manifest: Manifest) -> Digest:
        """Store every file of ``manifest`` (paths relative to ``src_dir``), in
        parallel, then the manifest itself, last; the tree's digest. Each file is
        checked against the manifest as it is copied (``IntegrityError`` naming
        the path if it changed since the manifest was made). Many small files go
        into pack files (``canon.stores.packset``), the rest into loose objects."""
        self._publish_staged()
        base = str(src_dir) + "/"
        first: dict[Digest, tuple[str, int]] = {}
        for e in manifest:
            first.setdefault(e.digest, (base + e.path, e.size))
        todo = {d: first[d] for d in self.absent(list(first))}
        if todo:
            small = [d for d, (_, size) in todo.items() if size <= SMALL_OBJECT]
            if len(small) < PACK_MIN_OBJECTS:
                small = []
            packed = set(small)
            loose = [d for d in todo if d not in packed]
            self.tmp.mkdir(parents=True, exist_ok=True)
            staged = self._stage_packs(small, todo)
            temps, chunk_dirs = self._stage_loose(loose, todo, staged)
            syncfs(self.tmp)  # every temp file's and pack's bytes durable, with one flush
            failpoints.hit("objects.tree_before_rename")
            self.packs.publish(staged)
            self._rename_all(temps)
            syncfs(self.objects if temps else self.packs.root)  # renames durable first
            rmdirs(chunk_dirs)
        failpoints.hit("objects.tree_before_manifest")
        return self.add_bytes(manifest.to_bytes())

    def hash_and_stage(
        self, paths: Sequence[str], sizes: Sequence[int]
    ) -> list[tuple[Digest, int, int, int] | None]:
        """Hash files for an observation that is about to be stored (a dataset being
        pinned): small files are copied into temp packs *as they are hashed*, so
        ``add_tree`` finds them already stored instead of reading them a second time.
        Per path, as ``observe.content``'s hasher: digest and ``(inode, size,
        mtime_ns)`` after reading, or ``None`` if unreadable. Staged packs become
        visible at the next ``add_tree`` (``discard_staged`` drops them)."""
        tmp = str(self.tmp) if len(paths) >= PACK_MIN_OBJECTS else ""
        if tmp:
            self.tmp.mkdir(parents=True, exist_ok=True)
        jobs = [(p, tmp) for p in paths]
        out: list[tuple[Digest, int, int, int] | None] = []
        with self._staged_lock:
            for r in run_on_cores(hash_and_pack, jobs, sizes):
                if r is None:
                    out.append(None)
                    continue
                d, ino, size, mtime, pack, offset, length = r
                if pack:
                    self._staged.setdefault(pack, []).append((offset, length, Digest(d)))
                out.append((Digest(d), ino, size, mtime))
        return out

    def discard_staged(self) -> None:
        """Remove staged packs that were never published (the pin did not happen)."""
        with self._staged_lock:
            for tmp in self._staged:
                unlink(tmp)
            self._staged.clear()

    def _publish_staged(self) -> None:
        with self._staged_lock:
            if not self._staged:
                return
            staged = [
                StagedPack(tmp, _layout_index(layout)) for tmp, layout in self._staged.items()
            ]
            self._staged.clear()
        syncfs(self.tmp)  # the packs' bytes durable before their indexes exist
        self.packs.publish(staged)

    def _stage_packs(
        self, small: list[Digest], todo: dict[Digest, tuple[str, int]]
    ) -> list[StagedPack]:
        if not small:
            return []
        groups = plan_packs((d, todo[d][1]) for d in small)
        jobs = [(str(self.tmp), [(todo[d][0], d) for d in g]) for g in groups]
        results = run_on_cores(pack_chunk, jobs, [sum(todo[d][1] for d in g) for g in groups])
        staged = [StagedPack(r[1], _index_of(r)) for r in results if r[0] == "ok"]
        bad = [r for r in results if r[0] != "ok"]
        if bad:
            for sp in staged:
                unlink(sp.tmp)
            raise _store_error(bad[0][1], (bad[0][0], bad[0][2]), len(bad))
        return staged

    def _stage_loose(
        self, loose: list[Digest], todo: dict[Digest, tuple[str, int]], staged: list[StagedPack]
    ) -> tuple[list[tuple[str, Digest]], set[str]]:
        if not loose:
            return [], set()
        jobs = [(todo[d][0], str(self.tmp), d) for d in loose]
        results = run_on_cores(store_chunk, jobs, [todo[d][1] for d in loose])
        pairs = list(zip(jobs, results, strict=True))
        temps = [(r[1], Digest(d)) for (_, _, d), r in pairs if r[0] == "ok"]
        chunk_dirs = {os.path.dirname(t) for t, _ in temps}
        bad = [(src, r) for (src, _, _), r in pairs if r[0] != "ok"]
        if bad:
            for tmp in [t for t, _ in temps] + [sp.tmp for sp in staged]:
                unlink(tmp)
            rmdirs(chunk_dirs)
            raise _store_error(bad[0][0], bad[0][1], len(bad))
        return temps, chunk_dirs

    def _rename_all(self, temps: Sequence[tuple[str, Digest]]) -> None:
        made: set[str] = set()
        for tmp, d in temps:
            final = self._path(d)
            shard = final[: final.rfind("/")]
            if shard not in made:
                os.makedirs(shard, exist_ok=True)
                made.add(shard)
            os.replace(tmp, final)

    def read_verified(self, d: Digest) -> bytes:
        """The bytes of object ``d``, re-hashed (``IntegrityError`` if they are not ``d``;
        ``StateError`` if the object is missing). A loose file is tried first: one
        object read (a pinned manifest, a lock's record) need not load every pack index."""
        try:
            try:
                data = Path(self._path(d)).read_bytes()
            except FileNotFoundError:
                path, offset, length = self._where(d)
                if offset < 0:
                    raise
                data = read_slot(Slot(path, offset, length))
        except FileNotFoundError as exc:
            raise _object_error(d, "missing") from exc
        except OSError as exc:
            raise _object_error(d, f"cannot read it: {exc.strerror}") from exc
        actual = hash_bytes(data)
        if actual != d:
            raise _object_error(d, f"corrupt:{actual}")
        return data

    def manifest(self, d: Digest) -> Manifest:
        """The verified, parsed manifest stored as object ``d``."""
        return Manifest.parse(self.read_verified(d))

    def verify(self, d: Digest) -> bool:
        """True if object ``d`` is present and its bytes hash to ``d``."""
        if not is_digest(d):
            return False
        path, offset, length = self._where(d)
        try:
            if offset >= 0:
                return hash_bytes(read_slot(Slot(path, offset, length))) == d
            return hash_file(path) == d
        except OSError:
            return False

    def restore(self, d: Digest, dest: Path, *, is_dir: bool, mode: int = MODE_FILE) -> None:
        """Materialise object ``d`` at ``dest``: a file (with ``mode``) or, if
        ``is_dir``, the directory whose manifest is ``d``. Atomic: built and
        verified in a temp sibling, then swapped in; whatever was at ``dest`` is
        removed. On any error (``IntegrityError`` naming the digest, ``StateError``
        for a missing object) ``dest`` is left as it was."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = f".{dest.name}.", ".canon-tmp"
        if is_dir:
            manifest = self.manifest(d)
            tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=dest.parent))
            try:
                self._fill(str(tmp), manifest)
                syncfs(tmp)  # one flush for the whole tree, before it becomes visible
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dest.parent)
            tmp = Path(name)
            try:
                problem = copy_object(self._where(d), fd, d)
                if problem is not None:
                    raise _object_error(d, problem)
                os.fchmod(fd, mode)
                os.fsync(fd)
            except BaseException:
                discard(fd, name)
                raise
            os.close(fd)
        failpoints.hit("objects.restore_before_swap")
        swap_in(tmp, dest)

    def _fill(self, top: str, manifest: Manifest) -> None:
        for sub in sorted({f"{top}/{e.path}".rsplit("/", 1)[0] for e in manifest}):
            os.makedirs(sub, exist_ok=True)
        jobs = [(self._where(e.digest), f"{top}/{e.path}", e.digest, e.mode) for e in manifest]
        results = run_on_cores(restore_chunk, jobs, [e.size for e in manifest])
        for (_, _, d, _), problem in zip(jobs, results, strict=True):
            if problem is not None:
                raise _object_error(Digest(d), problem)

    def add_expected(
        self, expected: Digest, fill: Callable[[Callable[[bytes], None]], None]
    ) -> None:
        """Store the bytes ``fill(write)`` writes (a download, streamed: one chunk in
        memory) as object ``expected``. Hashed as written; ``IntegrityError`` and
        nothing stored unless they hash to ``expected``."""
        want = parse_digest(expected)

        def stage(fd: int) -> Digest:
            h = hashlib.sha256()

            def write(chunk: bytes) -> None:
                h.update(chunk)
                write_all(fd, memoryview(chunk))

            fill(write)
            return Digest(PREFIX + h.hexdigest())

        tmp, d = self._stage(stage)
        if d != want:
            unlink(tmp)
            raise _object_error(want, f"corrupt:{d}")
        if self.has(d):
            unlink(tmp)
        else:
            self._publish(tmp, d)

    def add_verified_many(self, items: Sequence[tuple[Digest, bytes]]) -> list[Digest]:
        """Store many small objects at once (a pack's worth), each only if its bytes
        hash to its digest; the digests that did not (nothing stored for them).

        Durability as in ``add_tree``: temp files, one ``syncfs``, renames, one
        ``syncfs`` — not one fsync per object."""
        bad: list[Digest] = []
        good: dict[Digest, bytes] = {}
        for d, data in items:
            if hash_bytes(data) != d:
                bad.append(d)
            else:
                good.setdefault(d, data)
        todo = [(d, good[d]) for d in self.absent(list(good))]
        if not todo:
            return bad
        self.tmp.mkdir(parents=True, exist_ok=True)
        if len(todo) >= PACK_MIN_OBJECTS:
            writer = PackWriter(str(self.tmp))
            try:
                for d, data in todo:
                    writer.add(d, data)
                staged = writer.finish()
            except BaseException:
                writer.abandon()
                raise
            syncfs(self.tmp)
            failpoints.hit("objects.many_before_rename")
            self.packs.publish([staged])
            syncfs(self.packs.root)
            return bad
        chunk_dir = tempfile.mkdtemp(prefix="chunk-", dir=self.tmp)
        temps: list[tuple[str, Digest]] = []
        try:
            for i, (d, data) in enumerate(todo):
                tmp = f"{chunk_dir}/{i}"
                fd = os.open(tmp, _CREATE, OBJECT_MODE)
                try:
                    write_all(fd, memoryview(data))
                finally:
                    os.close(fd)
                temps.append((tmp, d))
            syncfs(self.tmp)
            failpoints.hit("objects.many_before_rename")
            self._rename_all(temps)
            syncfs(self.objects)
        finally:
            shutil.rmtree(chunk_dir, ignore_errors=True)
        return bad

    def prune_temp(self, older_than_s: float = 24 * 3600) -> int:
        """Remove temp files and chunk directories left by crashed writers (older
        than ``older_than_s``); how many entries were removed."""
        n = 0
        cutoff = time.time() - older_than_s
        with contextlib.suppress(FileNotFoundError), os.scandir(self.tmp) as it:
            for e in it:
                with contextlib.suppress(OSError):
                    if e.stat(follow_symlinks=False).st_mtime < cutoff:
                        remove(Path(e.path))
                        n += 1
        return n + self.packs.prune_orphans(older_than_s)

    def packed(self) -> list[Packed]:
        """Every object held in a pack (for verification and garbage collection)."""
        return self.packs.entries()

    def drop(self, digests: Iterable[Digest]) -> int:
        """Remove objects ``digests`` wherever they are (loose files unlinked, packs
        rewritten without them); bytes freed."""
        doomed = {hex_of(d) for d in digests if is_digest(d)}
        freed = 0
        for h in doomed:
            path = self._path(Digest(PREFIX + h))
            with contextlib.suppress(OSError):
                freed += os.stat(path).st_size
                os.chmod(path, 0o644)
                os.unlink(path)
        return freed + self.packs.drop(doomed, self.tmp)

    def _stage(self, fill: Callable[[int], Digest]) -> tuple[str, Digest]:
        """A durable, read-only temp file written by ``fill(fd)``, and its digest."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="obj-", suffix=".tmp", dir=self.tmp)
        try:
            d = fill(fd)
            os.fsync(fd)
            os.fchmod(fd, OBJECT_MODE)
        except BaseException:
            discard(fd, tmp)
            raise
        os.close(fd)
        return tmp, d

    def _publish(self, tmp: str, d: Digest) -> None:
        """Rename a complete, fsynced, checked temp file to object ``d``."""
        final = self.path_of(d)
        failpoints.hit("objects.before_rename")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            unlink(tmp)
            raise
        fsync_dir(final.parent)


def _layout_index(layout: list[tuple[int, int, Digest]]) -> PackIndex:
    """The index of a staged pack from its layout (offset, length, digest) entries."""
    entries = [PackEntry(d, o, n) for o, n, d in sorted(layout)]
    size = entries[-1].offset + entries[-1].length if entries else len(PACK_MAGIC)
    unique = {e.digest: e for e in reversed(entries)}  # first copy of a duplicate wins
    return PackIndex(pack_name(entries), size, tuple(sorted(unique.values())))


def _index_of(result: tuple[str, str, str, int, list[tuple[str, int, int]]]) -> PackIndex:
    _, _, pack, size, entries = result
    return PackIndex(pack, size, tuple(PackEntry(Digest(PREFIX + h), o, n) for h, o, n in entries))


# -- errors ---------------------------------------------------------------------------


def _object_error(d: Digest, problem: str) -> StateError:
    if problem == "missing":
        return StateError(f"object {d} is not in the cache", hint="pull it from a remote")
    if problem.startswith("corrupt:"):
        return IntegrityError(
            f"object {d} is corrupt: its bytes hash to {problem[len('corrupt:') :]}",
            hint="delete it (or run `canon cache verify`) and fetch it again from a remote",
        )
    return StateError(f"object {d}: {problem}")


def _store_error(src: str, result: tuple[str, str], count: int) -> StateError | PathError:
    more = f" (and {count - 1} more)" if count > 1 else ""
    if result[0] == "changed":
        return IntegrityError(
            f"{src} changed after canon looked at it (now {result[1]}){more}", hint=_CHANGED_HINT
        )
    return PathError(f"cannot store {src}: {result[1]}{more}")
