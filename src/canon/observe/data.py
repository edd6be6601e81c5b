"""Observe declared datasets: their sources compared with their pins. Read-only.

For each dataset this says what the planner needs (``DataObservation``):

- a workspace source: its content now, through the stat cache (no re-hash of
  unchanged files); when it differs from the pin and drift is asked for, the
  pinned manifest (from the object store) is diffed with the current one;
- a URL source, when drift is asked for: **one listing pass**, compared with
  the pinned source index (path, size, ETag/mtime) — no per-object request,
  nothing downloaded;
- subsets and queries: nothing here (the planner compares their declared spec
  with the pin; ``canon data status`` re-runs queries, ``canon.apply.dataset``).

A source that cannot be reached is a report (``problem``), not an error:
stages can still run on a cached pin while the source is down.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from canon.declare.project import DataKind, DatasetSpec, Project
from canon.errors import CanonError, DataError, SourceMissingError
from canon.observe.sources import list_source
from canon.plan.observed import DataObservation
from canon.stores.records import DatasetRecord, ProfileState
from canon.stores.sourceindex import Drift, SourceIndex, manifest_drift

if TYPE_CHECKING:
    from canon.observe.workspace import Workspace

__all__ = ["observe_data", "observe_dataset"]


def observe_data(
    project: Project, ws: Workspace, state: ProfileState, names: Iterable[str], *, drift: bool
) -> dict[str, DataObservation]:
    return {
        name: observe_dataset(project.datasets[name], ws, state.data.get(name), drift=drift)
        for name in names
    }


def observe_dataset(
    ds: DatasetSpec, ws: Workspace, pin: DatasetRecord | None, *, drift: bool
) -> DataObservation:
    cached = pin is not None and ws.store.has(pin.content.digest)
    if ds.kind is DataKind.PATH:
        return _workspace_source(ds, ws, pin, cached, drift)
    if ds.kind is DataKind.URL and pin is not None and drift:
        return _url_source(ds, ws, pin, cached)
    return DataObservation(cached=cached)


def _workspace_source(
    ds: DatasetSpec, ws: Workspace, pin: DatasetRecord | None, cached: bool, drift: bool
) -> DataObservation:
    content = ws.content(ds.path, new_data=pin is None)
    if content is None:
        return DataObservation(missing=True, cached=cached)
    if pin is None or not drift or content.digest == pin.content.digest:
        return DataObservation(source=content, cached=cached, drift=Drift() if pin else None)
    if not content.is_dir or not pin.content.is_dir:
        name = ds.path.rsplit("/", 1)[-1]
        if content.is_dir != pin.content.is_dir:
            return DataObservation(
                source=content, cached=cached, drift=Drift(note="a file became a directory or back")
            )
        return DataObservation(source=content, cached=cached, drift=Drift(changed=(name,)))
    if not ws.store.has(pin.content.digest):
        note = "content differs from the pin (pinned manifest not in the cache: no file list)"
        return DataObservation(source=content, cached=cached, drift=Drift(note=note))
    snap = ws.snapshot(ds.path, just_observed=True)  # the walk `content` just made
    if snap is None or snap[1] is None:
        return DataObservation(missing=snap is None, source=content, cached=cached)
    found = manifest_drift(ws.store.read_verified(pin.content.digest), snap[1])
    return DataObservation(source=content, cached=cached, drift=found)


def _url_source(
    ds: DatasetSpec, ws: Workspace, pin: DatasetRecord, cached: bool
) -> DataObservation:
    try:
        listing = list_source(ds)
    except SourceMissingError:
        return DataObservation(missing=True, cached=cached)
    except DataError as exc:
        return DataObservation(problem=exc.message, cached=cached)
    if pin.index is not None and listing.index.digest == pin.index:
        return DataObservation(drift=Drift(), cached=cached)
    if pin.index is None or not ws.store.has(pin.index):
        note = "the source index of the pin is not in the cache: cannot list the differences"
        return DataObservation(drift=Drift(note=note), cached=cached)
    try:
        pinned = SourceIndex.parse(ws.store.read_verified(pin.index))
    except CanonError as exc:
        return DataObservation(problem=exc.message, cached=cached)
    return DataObservation(drift=pinned.drift_to(listing.index), cached=cached)
