"""Materialise pinned datasets for stages: ``.canon/data/NAME``, verified, read-only.

``${data.NAME}`` and a ``data.NAME`` dep mean exactly the pinned content. Before
a stage that reads a dataset runs, ``Mounts.ensure`` makes its mount hold that
content:

- reused when the mount's digest (through a stat cache of its own, in
  ``.canon/data.db``: unchanged files are not re-read) equals the pin;
- otherwise restored from the object store, every byte re-hashed on the way
  (``ObjectStore.restore``: built aside, swapped in whole), then its files are
  made read-only so a stage cannot edit its input by accident (one that
  forces it is caught by the digest check next time);
- if the pinned content is not in the cache (a fresh clone, a pruned cache),
  it is fetched again from the source, and used only if the source still
  gives exactly the pinned digest; else the error says to pull it from a
  remote or re-pin on purpose.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from canon.declare.project import DATA_MOUNT, DatasetSpec
from canon.errors import DataError, IntegrityError
from canon.observe.content import ContentReader
from canon.observe.workspace import Workspace
from canon.stores.records import DatasetRecord, ProfileState
from canon.stores.statcache import StatCache

__all__ = ["Mounts"]

_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


class Mounts:
    """The materialised datasets of one workspace (main thread only)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.top = ws.root / DATA_MOUNT
        self._cache: StatCache | None = None
        self._done: set[tuple[str, str]] = set()

    def _reader(self) -> ContentReader:
        if self._cache is None:
            self.top.mkdir(parents=True, exist_ok=True)
            self._cache = StatCache(self.ws.state / "data.db")
        return ContentReader(self.top, self._cache)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def ensure(self, ds: DatasetSpec, pin: DatasetRecord, state: ProfileState) -> bool:
        """Make ``ds``'s mount hold its pin; True if anything was written."""
        done = (ds.name, pin.content.digest)
        if done in self._done:
            return False
        rel = ds.where[len(DATA_MOUNT) + 1 :]
        dest = self.top / rel
        current = self._reader().content(rel) if _plain(self.top, rel) else None
        if current is not None and current.digest == pin.content.digest:
            self._done.add(done)
            return False
        if not self.ws.store.has(pin.content.digest):
            self._refetch(ds, pin, state)
        _clear_for(self.top / ds.name, dest)
        try:
            self.ws.store.restore(pin.content.digest, dest, is_dir=pin.content.is_dir)
        except IntegrityError as exc:
            # the message is what a failed stage shows: it carries what to do
            raise IntegrityError(
                f"data.{ds.name}: its pinned content in the cache is damaged ({exc.message}); "
                "run `canon cache verify --repair` (re-fetches damaged objects from the "
                "remote), or `canon pull`",
                hint="`canon cache verify --repair`, then `canon apply` again",
            ) from exc
        _read_only(dest)
        self._done.add(done)
        return True

    def _refetch(self, ds: DatasetSpec, pin: DatasetRecord, state: ProfileState) -> None:
        from canon.apply.pinning import pin_dataset

        try:
            again = pin_dataset(ds, self.ws, state)
        except DataError as exc:
            raise type(exc)(  # keeps the exit code: a source that did not answer stays 4
                f"data.{ds.name}: the pinned content {pin.content.digest} is not in the cache, "
                f"and fetching it again failed: {exc.message}",
                hint="`canon pull` it from a remote",
            ) from exc
        if again.content.digest != pin.content.digest:
            raise DataError(
                f"data.{ds.name}: the pinned content {pin.content.digest} is not in the cache, "
                f"and the source now holds something else ({again.content.digest})",
                hint=f"`canon pull` the pin from a remote, or re-pin on purpose: "
                f"`canon data update {ds.name}`",
            )


def _plain(top: Path, rel: str) -> bool:
    """Whether every component of ``rel`` exists as a directory/file without links."""
    path = top
    for part in rel.split("/"):
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            path.unlink()  # never follow a link planted in a mount; restore replaces it
            return False
    return True


def _clear_for(own: Path, dest: Path) -> None:
    """Make room for ``dest`` inside the dataset's own directory ``own``: a file-
    shaped mount needs ``own`` to be a directory holding only ``dest``."""
    if dest == own:
        return
    if own.is_symlink() or own.is_file():
        own.unlink()
    own.mkdir(parents=True, exist_ok=True)
    for entry in own.iterdir():
        if entry.name != dest.name:
            _chmod_writable(entry)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _read_only(path: Path) -> None:
    if path.is_file():
        os.chmod(path, stat.S_IMODE(path.stat().st_mode) & ~_WRITE_BITS)
        return
    for dirpath, _, files in os.walk(path):
        for name in files:
            p = os.path.join(dirpath, name)
            os.chmod(p, stat.S_IMODE(os.lstat(p).st_mode) & ~_WRITE_BITS)


def _chmod_writable(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for dirpath, _, _ in os.walk(path):
            os.chmod(dirpath, 0o755)
