"""``canon cache verify [--repair] [-r REMOTE]``: re-hash the cache, repair it.

The check is ``canon.observe.cache.scan_cache`` (every byte re-hashed). With
``repair``: corrupt objects and strays are deleted (a corrupt object is worse
than a missing one: a missing one is fetched, a corrupt one would be
trusted), and when a remote is given, every deleted object that the current
lock references is fetched again (verified, like any fetch). Holds the repo
lock so that no apply reads an object while it is being replaced.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from canon.apply.sync import choose_remote
from canon.apply.transfer import Transfer
from canon.declare.memo import load_project_memoised
from canon.events import Emit
from canon.observe.cache import CacheReport, scan_cache
from canon.observe.root import STATE_DIR
from canon.stores.lockfile import read_lock
from canon.stores.objects import ObjectStore
from canon.stores.references import lock_roots
from canon.stores.remotes import open_remote
from canon.stores.remotes.catalog import record_dir_for
from canon.stores.repolock import RepoLock


@dataclass
class VerifyResult:
    report: CacheReport
    removed: list[str] = field(default_factory=list)
    refetched: int = 0


def run_verify(
    root: Path,
    *,
    profile: str | None,
    repair: bool,
    remote: str | None,
    use_remote: bool,
    emit: Emit,
    argv: Sequence[str] = (),
) -> VerifyResult:
    store = ObjectStore(root / STATE_DIR / "cache")
    with RepoLock(root / STATE_DIR / "apply.lock") as lock:
        lock.acquire(argv)
        result = VerifyResult(scan_cache(store))
        if not repair:
            return result
        store.drop(result.report.corrupt)  # loose files unlinked, packs rewritten without them
        result.removed.extend(result.report.corrupt)
        for stray in result.report.strays:
            with contextlib.suppress(OSError):
                if os.path.isdir(stray) and not os.path.islink(stray):
                    shutil.rmtree(stray)
                else:
                    os.unlink(stray)
            result.removed.append(stray)
        if use_remote:
            project = load_project_memoised(root, profile=profile)
            spec = choose_remote(project, remote)
            rem = open_remote(spec, root)
            roots = lock_roots(read_lock(root).state(project.profile))
            transfer = Transfer(store, rem, record_dir_for(root / STATE_DIR, rem), emit)
            result.refetched = transfer.fetch(roots).objects  # what is missing now, verified
        return result
