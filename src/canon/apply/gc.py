"""``canon gc [--dry-run] [-r REMOTE] [--min-age SECONDS]``: delete what nothing references.

Referenced means: a root of any profile of any ``canon.lock`` in any commit
reachable from any ref (branches, tags, ``refs/canon/*`` experiment refs, the
stash — ``canon.stores.lockhistory``), the staged lock and the working tree's
lock; plus, for a directory root, every file its manifest names. Everything
else in the local cache (or, with ``-r``, on the remote) is garbage.

Decisions:

- **Run cache.** An entry of ``.canon/runs`` whose outputs are not all kept
  is dropped with them: gc frees what no commit needs, and a run-cache entry
  pointing at deleted objects would only fail later. Runs recorded by a lock
  in Git keep their objects (and so their entries).
- **Races.** The collection and the deletion hold the repo lock, so no
  ``canon apply`` adds objects (whose lock is not written yet) meanwhile.
  Another *machine* pushing to a shared remote cannot be locked out: remote
  objects younger than ``--min-age`` (default one hour for a remote, as git's
  prune expiry and restic's) are never deleted.
- **Packs.** A pack is deleted when none of its objects is referenced (index
  first, then the pack: a reader never sees an index without its pack). A
  pack holding live and dead objects is kept whole and reported; repacking
  is left for later. A pack with no index (an interrupted push) older than
  ``--min-age`` is deleted.
- **Nothing on doubt.** A Git failure, or a lock in history that does not
  parse, stops gc before it deletes anything.
- **Images** (local gc only: ``.canon/images``). Roots: every image any of
  those locks records (its manifest and the image it was built on) and every
  tag in the layout's ``index.json`` (``canon pull-image`` tags without a
  lock); kept is what they reach (index -> manifests -> config and layers),
  and an index that lists a kept manifest (a base pinned by a multi-platform
  index resolves through it: rebuilding stays offline).
  ``canon build`` holds the repo lock, but ``pull-image`` writes blobs before
  it tags them without it, so unreferenced blobs younger than ``--min-age``
  (default ``IMAGE_MIN_AGE``, one hour) are kept, the tags are read again
  just before deleting, and temp files of interrupted writes (and
  ``.canon/check-*`` scratch layouts of killed ``canon build --check`` runs)
  go after an hour. A corrupt manifest stops gc before it deletes anything (its layers
  could not be known).
- **Rebuilt environments** (``.canon/envs``, made by ``canon reproduce``): a cache
  rebuilt on demand, so a venv not used for ``ENV_MIN_AGE`` (a week; ``--min-age``
  overrides) is deleted, and so is a half-built one as old — never one a running
  reproduce holds (its lock is taken first, without waiting).
- **Kept logs** (``.canon/exps/logs/NAME``: a failed experiment's or reproduction's
  stage logs, kept when its worktree went): deleted once a week old (``--min-age``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from canon.apply.sync import choose_remote
from canon.apply.transfer import Transfer
from canon.declare.memo import load_project_memoised
from canon.digest import Digest
from canon.errors import CanonError, RemoteMissingError, StateError
from canon.events import Emit, Notice
from canon.observe.cache import list_objects
from canon.observe.root import STATE_DIR
from canon.stores.lockfile import parse_lock, read_lock
from canon.stores.lockhistory import lock_versions
from canon.stores.objects import ObjectStore
from canon.stores.oci.layout import ImageLayout
from canon.stores.records import Lock
from canon.stores.references import Root, all_roots, expand
from canon.stores.remotes import open_remote
from canon.stores.remotes.catalog import Catalog, record_dir_for
from canon.stores.remotes.protocol import PACKS, Remote, index_key, pack_key
from canon.stores.repolock import RepoLock

REMOTE_MIN_AGE = 3600.0
IMAGE_MIN_AGE = 3600.0
TEMP_MIN_AGE = 3600.0
ENV_MIN_AGE = 7 * 24 * 3600.0
IMAGES_DIR = "images"  # under .canon (apply.images.IMAGES_DIR)


@dataclass
class GcResult:
    where: str
    dry_run: bool
    kept: int = 0
    removed: list[str] = field(default_factory=list)  # digests or remote keys
    size: int = 0
    runs_dropped: int = 0
    mixed_packs: int = 0  # packs kept for their live objects while holding dead ones
    young: int = 0  # garbage kept because it is younger than min_age
    images: ImageGcResult | None = None  # .canon/images (local gc only)
    envs: list[str] = field(default_factory=list)  # .canon/envs venvs removed (local gc)
    logs: list[str] = field(default_factory=list)  # .canon/exps/logs/NAME removed (local gc)


@dataclass
class ImageGcResult:
    where: str
    kept: int = 0  # blobs an image a lock records or a tag names reaches
    removed: list[str] = field(default_factory=list)  # blob digests
    size: int = 0
    young: int = 0  # unreferenced blobs younger than the grace period
    temp: int = 0  # temp files of interrupted writes removed


def _locks(root: Path) -> list[Lock]:
    """Every lock Git (all commits of all refs, the index) or the working tree knows."""
    locks: list[Lock] = []
    for i, blob in enumerate(lock_versions(root)):
        try:
            locks.append(parse_lock(blob, source=f"canon.lock (version {i + 1} in Git history)"))
        except StateError as exc:
            raise StateError(
                f"gc stopped before deleting anything: {exc.message}",
                hint="fix or remove that commit's canon.lock, then run gc again",
            ) from exc
    locks.append(read_lock(root))
    return locks


def referenced_roots(root: Path, locks: Sequence[Lock] | None = None) -> list[Root]:
    """Every root of every lock Git or the working tree knows (deduplicated)."""
    roots: dict[Digest, Root] = {}
    for lock in _locks(root) if locks is None else locks:
        for r in all_roots(lock):
            roots.setdefault(r.digest, r)
    return list(roots.values())


def referenced_images(locks: Sequence[Lock]) -> set[Digest]:
    """The manifests the locks record, and the images those were built on."""
    found: set[Digest] = set()
    for lock in locks:
        for state in lock.profiles.values():
            for record in state.images.values():
                found.add(record.digest)
                if record.base is not None:
                    found.add(record.base)
    return found


def run_gc(
    root: Path,
    *,
    profile: str | None,
    remote: str | None,
    dry_run: bool,
    min_age: float | None,
    emit: Emit,
    argv: Sequence[str] = (),
) -> GcResult:
    store = ObjectStore(root / STATE_DIR / "cache")
    with RepoLock(root / STATE_DIR / "apply.lock") as lock:
        lock.acquire(argv)
        locks = _locks(root)
        roots = referenced_roots(root, locks)
        if remote is None:
            layout = ImageLayout(root / STATE_DIR / IMAGES_DIR)
            image_age = IMAGE_MIN_AGE if min_age is None else min_age
            keep_images = _image_keep_set(layout, referenced_images(locks))  # before any delete
            result = _gc_local(root, store, roots, dry_run, min_age or 0.0, emit)
            result.images = _gc_images(layout, keep_images, dry_run, image_age)
            result.images.temp += _stale_checks(root / STATE_DIR, dry_run)
            result.envs = _unused_envs(root / STATE_DIR / "envs", dry_run, min_age)
            result.logs = _old_logs(root / STATE_DIR / "exps" / "logs", dry_run, min_age)
            return result
        project = load_project_memoised(root, profile=profile)
        rem = open_remote(choose_remote(project, remote), root)
        age = REMOTE_MIN_AGE if min_age is None else min_age
        return _gc_remote(root, store, rem, roots, dry_run, age, emit)


def _keep_set(store: ObjectStore, roots: Sequence[Root], emit: Emit) -> set[Digest]:
    keep: set[Digest] = {r.digest for r in roots}
    trees = []
    for r in roots:
        if r.is_dir and store.has(r.digest):
            try:
                trees.append(store.manifest(r.digest))
            except StateError as exc:
                emit(Notice(f"{r.address}: {exc.message}; its files count as unreferenced"))
    keep.update(expand(trees))
    return keep


def _gc_local(
    root: Path,
    store: ObjectStore,
    roots: Sequence[Root],
    dry_run: bool,
    min_age: float,
    emit: Emit,
) -> GcResult:
    keep = _keep_set(store, roots, emit)
    result = GcResult(str(store.root), dry_run, kept=0)
    cutoff = time.time() - min_age
    objects, _ = list_objects(store)
    for d, path, size in objects:
        if d in keep:
            result.kept += 1
            continue
        if min_age and _mtime(path) > cutoff:
            result.young += 1
            continue
        result.removed.append(d)
        result.size += size
        if not dry_run:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    packed_doomed: list[Digest] = []
    for p in store.packed():
        if p.digest in keep:
            result.kept += 1
        elif min_age and p.mtime > cutoff:
            result.young += 1
        else:
            result.removed.append(p.digest)
            result.size += p.slot.length
            packed_doomed.append(p.digest)
    if packed_doomed and not dry_run:
        store.drop(packed_doomed)  # packs rewritten with their live objects only
    runs = root / STATE_DIR / "runs"
    gone = set(result.removed)
    for entry in sorted(runs.glob("*/*.json")) if runs.is_dir() else []:
        outs = _run_outputs(entry)
        if outs is None or any(d in gone or not store.has(d) for d in outs):
            result.runs_dropped += 1
            if not dry_run:
                entry.unlink(missing_ok=True)
    if not dry_run:
        store.prune_temp(older_than_s=max(min_age, 3600.0))
    return result


def _image_keep_set(layout: ImageLayout, recorded: set[Digest]) -> set[Digest]:
    tagged = {d.digest for d in layout.manifests()}
    try:
        keep = layout.reachable(recorded | tagged)
        return keep | layout.indexes_listing(keep)
    except CanonError as exc:
        raise StateError(
            f"gc stopped before deleting anything: {exc.message}",
            hint=f"delete that blob from {layout.blobs} and build or pull the image again "
            "(`canon build -f`, `canon pull-image`), then run gc again",
        ) from exc


def _gc_images(
    layout: ImageLayout, keep: set[Digest], dry_run: bool, min_age: float
) -> ImageGcResult:
    result = ImageGcResult(str(layout.root))
    now = time.time()
    doomed: dict[Digest, int] = {}
    for blob in layout.stored():
        if blob.digest is None:
            if blob.path.name.startswith(".tmp-") and now - blob.mtime > TEMP_MIN_AGE:
                result.temp += 1
                if not dry_run:
                    blob.path.unlink(missing_ok=True)
        elif blob.digest in keep:
            result.kept += 1
        elif now - blob.mtime < min_age:
            result.young += 1
        else:
            doomed[blob.digest] = blob.size
    if doomed and not dry_run:
        # a tag written meanwhile (pull-image) keeps what it reaches
        still = _image_keep_set(layout, set()) & doomed.keys()
        result.kept += len(still)
        doomed = {d: size for d, size in doomed.items() if d not in still}
        for digest in doomed:
            layout.remove_blob(digest)
    result.removed = sorted(doomed)
    result.size = sum(doomed.values())
    return result


def _stale_checks(state: Path, dry_run: bool) -> int:
    """Scratch layouts of ``canon build --check`` runs that were killed (a finished
    check removes its own); a running one is younger than ``TEMP_MIN_AGE``."""
    from canon.apply.images import CHECK_PREFIX

    stale = 0
    for d in state.glob(f"{CHECK_PREFIX}*"):
        if d.is_dir() and not d.is_symlink() and time.time() - _mtime(str(d)) > TEMP_MIN_AGE:
            stale += 1
            if not dry_run:
                shutil.rmtree(d, ignore_errors=True)
    return stale


def _unused_envs(envs: Path, dry_run: bool, min_age: float | None) -> list[str]:
    from canon.executors.venv import remove_unused

    age = ENV_MIN_AGE if min_age is None else min_age
    return [p.name for p in remove_unused(envs, age, dry_run=dry_run)]


def _old_logs(logs: Path, dry_run: bool, min_age: float | None) -> list[str]:
    """Kept stage logs of failed runs older than ``ENV_MIN_AGE`` (or ``min_age``)."""
    cutoff = time.time() - (ENV_MIN_AGE if min_age is None else min_age)
    old = [d for d in (sorted(logs.iterdir()) if logs.is_dir() else []) if _mtime(str(d)) < cutoff]
    if not dry_run:
        for d in old:
            shutil.rmtree(d, ignore_errors=True)
    return [d.name for d in old]


def _run_outputs(entry: Path) -> list[Digest] | None:
    """The output digests of one run-cache entry (None if it does not parse)."""
    try:
        raw = json.loads(entry.read_bytes())
        return [Digest(str(c["digest"])) for c in raw["outs"].values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _gc_remote(
    root: Path,
    store: ObjectStore,
    remote: Remote,
    roots: Sequence[Root],
    dry_run: bool,
    min_age: float,
    emit: Emit,
) -> GcResult:
    record = record_dir_for(root / STATE_DIR, remote)
    # Manifests the cache lacks are read from the remote (verified) to know their files.
    absent = [
        Root(r.address, r.digest, 0, False) for r in roots if r.is_dir and not store.has(r.digest)
    ]
    if absent:
        transfer = Transfer(store, remote, record, emit)
        for r in absent:
            try:
                transfer.fetch([r])
            except RemoteMissingError:
                emit(Notice(f"{r.address}: its manifest is on neither the cache nor the remote"))
    keep = _keep_set(store, roots, emit)
    catalog = Catalog.load(remote, record)
    result = GcResult(remote.display, dry_run)
    cutoff = time.time() - min_age
    doomed: list[str] = []
    packs_live: dict[str, int] = {}
    packs_dead: dict[str, int] = {}
    for d, loc in catalog.where.items():
        if loc.pack is None:
            if d in keep:
                result.kept += 1
            elif catalog.listing[loc.key].mtime > cutoff:
                result.young += 1
            else:
                doomed.append(loc.key)
                result.removed.append(loc.key)
                result.size += loc.length
        elif d in keep:
            packs_live[loc.pack] = packs_live.get(loc.pack, 0) + 1
            result.kept += 1
        else:
            packs_dead[loc.pack] = packs_dead.get(loc.pack, 0) + 1
    for pack, info in catalog.packs.items():
        if pack in packs_live:
            result.mixed_packs += pack in packs_dead
            continue
        if info.mtime > cutoff:
            result.young += 1
            continue
        doomed += [index_key(pack), pack_key(pack)]  # index first: never an index without pack
        result.removed += [index_key(pack), pack_key(pack)]
        result.size += info.size
    for key, info in catalog.listing.items():  # packs or indexes without their partner
        if key.startswith(PACKS) and key not in doomed:
            stem = key[len(PACKS) :].rsplit(".", 1)[0]
            if stem not in catalog.packs and info.mtime <= cutoff:
                doomed.append(key)
                result.removed.append(key)
                result.size += info.size
    if result.mixed_packs:
        emit(Notice(f"{result.mixed_packs} pack(s) hold both live and dead objects: kept whole"))
    if not dry_run and doomed:
        indexes = [k for k in doomed if k.endswith(".idx")]
        remote.delete(indexes)  # first: no index ever names a deleted pack
        remote.delete([k for k in doomed if not k.endswith(".idx")])
    return result


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
