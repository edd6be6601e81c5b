"""What a lock references: the roots that push, pull, fetch and gc work from.

A *root* is one object the lock names directly: a stage output or a dataset
pin (a file's object, or a directory's manifest whose files are objects too),
and a dataset's source index. ``lock_roots(state)`` lists them for one
profile; ``all_roots(lock)`` for every profile (gc keeps what any profile
uses). Expanding a directory root into its files needs its manifest, which is
an object in the cache (``expand``).

Adding a new kind of reference to the lock? Add it here: push, pull, fetch,
``cache verify`` and ``gc`` all see the world through this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from canon.digest import Digest
from canon.stores.manifest import Manifest
from canon.stores.records import Content, Lock, ProfileState
from canon.urls import scheme_of


@dataclass(frozen=True)
class Root:
    address: str  # "data.NAME", "data.NAME:index", "stage.NAME:path"
    digest: Digest
    size: int
    is_dir: bool
    path: str | None = None  # workspace path pull restores it to (None: not restored)


def lock_roots(state: ProfileState, targets: Sequence[str] = ()) -> list[Root]:
    """Every root of one profile's state, or those of ``targets`` (stage names,
    dataset names or ``data.NAME``, workspace paths)."""
    roots: list[Root] = []
    wanted = set(targets)
    for name, ds in state.data.items():
        if wanted and not wanted & {name, f"data.{name}", ds.path}:
            continue
        source = getattr(ds, "source", None)
        local = (
            bool(ds.path)
            and not ds.path.startswith(".canon")
            and (source is None or scheme_of(str(source)) is None)
        )
        roots.append(_root(f"data.{name}", ds.content, ds.path if local else None))
        index = getattr(ds, "index", None)
        if index is not None:
            roots.append(Root(f"data.{name}:index", index, 0, False))
    for name, stage in state.stages.items():
        for path, content in stage.outs.items():
            if wanted and not wanted & {name, f"stage.{name}", path}:
                continue
            roots.append(_root(f"stage.{name}:{path}", content, path))
    return roots


def all_roots(lock: Lock) -> list[Root]:
    return [r for state in lock.profiles.values() for r in lock_roots(state)]


def unknown_targets(state: ProfileState, targets: Sequence[str]) -> list[str]:
    """The targets that name nothing in ``state``."""
    known: set[str] = set()
    for name, ds in state.data.items():
        known |= {name, f"data.{name}", ds.path}
    for name, stage in state.stages.items():
        known |= {name, f"stage.{name}", *stage.outs}
    return [t for t in targets if t not in known]


def expand(manifests: Iterable[Manifest]) -> dict[Digest, int]:
    """Every file object the manifests name, with its size."""
    files: dict[Digest, int] = {}
    for m in manifests:
        for e in m:
            files[e.digest] = e.size
    return files


def _root(address: str, content: Content, path: str | None) -> Root:
    return Root(address, content.digest, content.size, content.is_dir, path)
