"""The ``canon data`` flows: ls, status, update, add.

- ``list_datasets``: each dataset, its pin (digest, size, files), its source
  (redacted) and, for a subset, what it was taken from. Reads only the lock.
- ``dataset_status``: every pinned source compared with its pin (one listing
  per URL source; stat-cached digests and a manifest diff for workspace
  sources); every query *run again*, and a different result reported as
  "the query is not immutable" — never accepted silently.
- ``update_datasets``: re-pin on purpose (the only way a changed source, or a
  changed query, reaches the stages). Holds the workspace lock; each pin is
  objects first, then the lock (atomic rename). Stages that read the dataset
  are then out of date with ``DEP_CHANGED data.NAME``.
- ``add_dataset``: append the dataset to canon.yaml (the user's text is kept:
  a few lines are inserted, nothing is re-dumped), check that the project
  still loads, and pin it. On any failure canon.yaml and the lock are left as
  they were.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canon.apply.pinning import pin_dataset
from canon.apply.session import load
from canon.declare.project import DataKind, DatasetSpec, Project
from canon.errors import CanonError, DataError, DeclarationError
from canon.events import DatasetFetching, DatasetPinned, Emit, Notice
from canon.executors.queries import run_query
from canon.observe.data import observe_dataset
from canon.observe.workspace import Workspace
from canon.plan.data import data_order, source_label
from canon.stores.atomic import atomic_write
from canon.stores.lockfile import read_lock, write_lock
from canon.stores.records import DatasetRecord
from canon.stores.repolock import RepoLock
from canon.urls import credential_problem

__all__ = [
    "DatasetRow",
    "DatasetState",
    "add_dataset",
    "dataset_status",
    "list_datasets",
    "update_datasets",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class DatasetRow:
    name: str
    kind: str
    source: str
    mount: str
    pin: DatasetRecord | None

    def to_dict(self) -> dict[str, Any]:
        pin = self.pin
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "mount": self.mount,
            "pinned": pin is not None,
        }
        if pin is not None:
            out.update(digest=pin.content.digest, size=pin.content.size, files=pin.content.nfiles)
            if pin.subset_of is not None:
                out["subset_of"] = {"name": pin.subset_of.name, "digest": pin.subset_of.digest}
            if pin.spec:
                out["spec"] = dict(pin.spec)
        return out


@dataclass(frozen=True)
class DatasetState:
    """One line of ``canon data status``."""

    name: str
    state: str  # ok | drift | missing | unreachable | not-pinned | not-immutable | changed
    source: str
    detail: str = ""
    drift: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return self.state in ("ok", "not-pinned")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "state": self.state, "source": self.source}
        if self.detail:
            out["detail"] = self.detail
        if self.drift:
            out["drift"] = self.drift
        return out


def list_datasets(root: Path, profile: str | None) -> list[DatasetRow]:
    project, _ = load(root, profile)
    state = read_lock(root).state(project.profile)
    return [
        DatasetRow(n, ds.kind.value, source_label(ds), ds.where, state.data.get(n))
        for n, ds in project.datasets.items()
    ]


def dataset_status(
    root: Path, profile: str | None, names: Sequence[str] = ()
) -> list[DatasetState]:
    project, _ = load(root, profile)
    state = read_lock(root).state(project.profile)
    out: list[DatasetState] = []
    with Workspace(root) as ws:
        for name in _select(project, names):
            ds = project.datasets[name]
            pin = state.data.get(name)
            label = source_label(ds)
            if pin is None:
                out.append(DatasetState(name, "not-pinned", label, "`canon apply` pins it"))
            elif ds.kind is DataKind.QUERY:
                out.append(_query_status(ds, pin, ws, label))
            elif ds.kind is DataKind.SUBSET:
                out.append(_subset_status(ds, pin, state.data, label))
            else:
                out.append(_source_status(ds, pin, ws, label))
    return out


def _select(project: Project, names: Sequence[str]) -> list[str]:
    for n in names:
        if n not in project.datasets:
            from canon.declare.diagnostics import did_you_mean

            raise DataError(
                f'unknown dataset "{n}"',
                hint=did_you_mean(n, project.datasets) or "`canon data ls` lists them",
            )
    return data_order(project, names or None)


def _source_status(ds: DatasetSpec, pin: DatasetRecord, ws: Workspace, label: str) -> DatasetState:
    seen = observe_dataset(ds, ws, pin, drift=True)
    cached = "the pin is cached" if seen.cached else "the pin is NOT cached: `canon pull` it"
    if seen.missing:
        return DatasetState(ds.name, "missing", label, f"the source is gone; {cached}")
    if seen.problem is not None:
        return DatasetState(ds.name, "unreachable", label, seen.problem)
    if seen.drift is not None and not seen.drift.empty:
        return DatasetState(
            ds.name, "drift", label, seen.drift.summary(), drift=seen.drift.to_dict()
        )
    return DatasetState(ds.name, "ok", label, f"pinned {pin.content.digest[:19]}")


def _subset_status(ds: DatasetSpec, pin: DatasetRecord, pins: Any, label: str) -> DatasetState:
    assert ds.subset is not None
    parent = pins.get(ds.subset.parent)
    made_from = pin.subset_of.digest if pin.subset_of is not None else None
    if parent is None or parent.content.digest != made_from:
        return DatasetState(
            ds.name,
            "changed",
            label,
            f"data.{ds.subset.parent} was re-pinned: `canon apply` re-derives this subset",
        )
    return DatasetState(ds.name, "ok", label, f"pinned {pin.content.digest[:19]}")


def _query_status(ds: DatasetSpec, pin: DatasetRecord, ws: Workspace, label: str) -> DatasetState:
    assert ds.query is not None
    try:
        now = run_query(ds.name, ds.query, ws.root, None, ws.state / "tmp")
    except DataError as exc:
        return DatasetState(ds.name, "unreachable", label, exc.message)
    if now.digest != pin.content.digest:
        return DatasetState(
            ds.name,
            "not-immutable",
            label,
            f"the query is not immutable: it now returns {now.digest[:19]}, the pin is "
            f"{pin.content.digest[:19]} (stages keep the pin; pin an as_of snapshot, or "
            f"`canon data update {ds.name}` on purpose)",
        )
    return DatasetState(ds.name, "ok", label, "the query returns exactly the pinned result")


def update_datasets(
    root: Path,
    profile: str | None,
    names: Sequence[str],
    *,
    emit: Emit,
    argv: Sequence[str] = (),
    wait: float = 0.0,
) -> list[str]:
    """Re-pin ``names`` (all when empty) from their sources now; the names whose
    pin changed."""
    with RepoLock(root / ".canon" / "apply.lock") as repo_lock:
        repo_lock.acquire(argv, wait=wait)
        project, _ = load(root, profile)
        return _pin_all(root, project, _select(project, names), emit)


def _pin_all(root: Path, project: Project, names: Sequence[str], emit: Emit) -> list[str]:
    changed: list[str] = []
    lock = read_lock(root)
    with Workspace(root) as ws:
        for name in names:
            state = lock.state(project.profile)
            before = state.data.get(name)
            record = pin_dataset(
                project.datasets[name],
                ws,
                state,
                lambda n, files, size: emit(DatasetFetching(n, files, size)),
            )
            if before == record:
                emit(Notice(f"data.{name}: unchanged ({record.content.digest[:19]})"))
                continue
            lock = lock.with_state(project.profile, state.with_dataset(name, record))
            write_lock(root, lock)  # objects first (pin_dataset), then the lock
            c = record.content
            emit(DatasetPinned(name, c.digest, c.nfiles, c.size))
            changed.append(name)
    if changed:
        emit(Notice("canon.lock changed: commit it to record the new pins"))
    return changed


def add_dataset(
    root: Path,
    profile: str | None,
    name: str,
    source: str,
    *,
    emit: Emit,
    description: str | None = None,
    argv: Sequence[str] = (),
) -> DatasetRecord:
    """Declare ``name`` with ``source`` in canon.yaml and pin it."""
    if not _NAME.match(name):
        raise DataError(
            f"{name!r} is not a dataset name",
            hint="use letters, digits, '_' and '-', starting with a letter or '_'",
        )
    problem = credential_problem(source)
    if problem is not None:  # refused before it is ever written anywhere
        raise DataError(
            f"data.{name}: {problem}",
            hint="credentials come from the environment (AWS_PROFILE, AWS_ACCESS_KEY_ID, …), "
            "never from canon.yaml",
        )
    config = root / "canon.yaml"
    original = config.read_bytes()
    project, _ = load(root, profile)
    if name in project.datasets:
        raise DataError(
            f"data.{name} is already declared",
            hint=f"`canon data update {name}` re-pins it; edit canon.yaml to change its source",
        )
    atomic_write(config, insert_dataset(original.decode("utf-8"), name, source, description))
    with RepoLock(root / ".canon" / "apply.lock") as repo_lock:
        try:
            repo_lock.acquire(argv)
            project, _ = load(root, profile)
            _pin_all(root, project, [name], emit)
        except (CanonError, KeyboardInterrupt):
            atomic_write(config, original)  # the declaration and the lock stay as they were
            raise
    record = read_lock(root).state(project.profile).data.get(name)
    if record is None:  # pinned content equal to an existing record: nothing was written
        raise DataError(f"data.{name} was not pinned")
    return record


def insert_dataset(text: str, name: str, source: str, description: str | None) -> bytes:
    """canon.yaml's text with the dataset added under ``data:`` (a block
    mapping), or a new ``data:`` section at the end; nothing else changes."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    body = [f"source: {_yaml_str(source)}"]
    if description:
        body.append(f"description: {_yaml_str(description)}")
    top = next((i for i, line in enumerate(lines) if re.match(r"^data\s*:", line)), None)
    if top is None:
        entry = [f"  {name}:\n", *(f"    {b}\n" for b in body)]
        return "".join([*lines, "data:\n", *entry]).encode("utf-8")
    rest = lines[top].split(":", 1)[1].split("#", 1)[0].strip()
    if rest and rest != "{}":
        raise DeclarationError(
            "canon.yaml declares data: in flow style ({...}); canon data add only edits "
            "block mappings",
            hint=f"add data.{name} by hand, with source: {source}",
        )
    end = top + 1
    indent: str | None = None
    last = top
    while end < len(lines):
        line = lines[end]
        stripped = line.strip()
        if stripped and not line[0].isspace() and not stripped.startswith("#"):
            break  # the next top-level key
        if stripped and not stripped.startswith("#"):
            last = end
            if indent is None:
                indent = line[: len(line) - len(line.lstrip())]
        end += 1
    pad = indent or "  "
    entry = [f"{pad}{name}:\n", *(f"{pad}  {b}\n" for b in body)]
    if rest == "{}":
        lines[top] = "data:\n"
    return "".join([*lines[: last + 1], *entry, *lines[last + 1 :]]).encode("utf-8")


def _yaml_str(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML): no injection."""
    return json.dumps(value, ensure_ascii=False)
