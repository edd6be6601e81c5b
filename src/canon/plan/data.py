"""Datasets in the plan: the pin wins. Pure, no I/O.

The policy (issue 3): a stage reads a dataset's *pinned* content, never the
live source, so the digest of a ``data.NAME`` dep is the pin's digest.

- never pinned -> PIN (``DATA_NEW``): ``canon apply`` pins it;
- a subset whose parent's pin or whose own sample/filter/seed changed -> PIN
  (``UPSTREAM_CHANGED`` / ``SUBSET_CHANGED``): it is a pure function of pinned
  content, so apply re-derives it;
- the declared source, query, database or as_of is not what was pinned ->
  UPDATE (``SOURCE_CHANGED`` / ``QUERY_CHANGED``): reading the outside world
  again is done on purpose, by ``canon data update NAME``; until then stages
  keep the old pin;
- otherwise NOOP, carrying what was observed as reports: ``DATA_DRIFT`` (files
  added / removed / changed), ``SOURCE_MISSING``, ``SOURCE_UNREACHABLE``.
  Drift never triggers a run or a re-pin by itself.

``pin_spec`` is what the lock records about how a dataset was made; the
planner compares it with the declaration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from canon.declare.project import DataKind, DatasetSpec, Project
from canon.digest import Digest, hash_bytes
from canon.plan.change import Action, Change, Reason, Why
from canon.plan.observed import DataObservation
from canon.stores.records import DatasetRecord, ProfileState
from canon.urls import redact

__all__ = ["DataPlan", "data_order", "pin_spec", "plan_data", "source_label"]


def pin_spec(ds: DatasetSpec) -> dict[str, Any]:
    """How ``ds`` is made, as the lock records it (never a credential)."""
    if ds.subset is not None:
        out: dict[str, Any] = {"seed": ds.subset.seed}
        if ds.subset.sample is not None:
            out["sample"] = ds.subset.sample
        if ds.subset.filter is not None:
            out["filter"] = ds.subset.filter
        return out
    if ds.query is not None:
        q = ds.query
        out = {
            "query": hash_bytes(q.text.encode()),
            "database": redact(q.database),
            "format": q.format,
        }
        if q.as_of is not None:
            out["as_of"] = q.as_of
        return out
    return {}


def source_label(ds: DatasetSpec) -> str:
    """How a dataset's source is shown and recorded (redacted)."""
    if ds.subset is not None:
        s = ds.subset
        how = [
            f"sample {s.sample}" if s.sample is not None else "",
            f"filter {s.filter!r}" if s.filter is not None else "",
        ]
        return f"{' '.join(h for h in how if h)} of data.{s.parent} (seed {s.seed})"
    if ds.query is not None:
        return f"query on {redact(ds.query.database)}"
    return redact(ds.source)


def data_order(project: Project, names: Iterable[str] | None = None) -> list[str]:
    """Dataset names with every subset after its parent (and the parents of
    ``names`` included)."""
    wanted = list(project.datasets) if names is None else list(names)
    out: list[str] = []

    def visit(name: str) -> None:
        if name in out or name not in project.datasets:
            return
        subset = project.datasets[name].subset
        if subset is not None:
            visit(subset.parent)
        out.append(name)

    for name in wanted:
        visit(name)
    return out


@dataclass(frozen=True)
class DataPlan:
    changes: tuple[Change, ...]
    digests: Mapping[str, Digest | None]  # the pin a dep will see; None: known after pinning


def plan_data(
    project: Project,
    state: ProfileState,
    observed: Mapping[str, DataObservation],
    names: Iterable[str],
) -> DataPlan:
    changes: list[Change] = []
    digests: dict[str, Digest | None] = {}
    pinning: set[str] = set()
    for name in data_order(project, names):
        ds = project.datasets[name]
        pin = state.data.get(name)
        seen = observed.get(name, DataObservation())
        change = _one(ds, pin, seen, state, digests, pinning)
        if change.action is Action.PIN:
            pinning.add(name)
            known = seen.source if ds.kind is DataKind.PATH and pin is None else None
            digests[name] = known.digest if known is not None else None
        else:
            digests[name] = pin.content.digest if pin is not None else None
        changes.append(change)
    return DataPlan(tuple(changes), digests)


def _one(
    ds: DatasetSpec,
    pin: DatasetRecord | None,
    seen: DataObservation,
    state: ProfileState,
    digests: Mapping[str, Digest | None],
    pinning: set[str],
) -> Change:
    address = f"data.{ds.name}"
    label = source_label(ds)
    if pin is None:
        return Change(address, Action.PIN, (Why(Reason.DATA_NEW, label),))
    if ds.subset is not None:
        parent = ds.subset.parent
        wanted = pin_spec(ds)
        if dict(pin.spec) != wanted:
            return Change(
                address, Action.PIN, (Why(Reason.SUBSET_CHANGED, None, dict(pin.spec), wanted),)
            )
        now = digests.get(parent)
        then = pin.subset_of.digest if pin.subset_of is not None else None
        if parent in pinning or now != then:
            why = Why(Reason.UPSTREAM_CHANGED, f"data.{parent}", then, now)
            return Change(address, Action.PIN, (why,))
        return Change(address, Action.NOOP)
    if ds.query is not None:
        wanted = pin_spec(ds)
        if dict(pin.spec) != wanted:
            diff = sorted(
                k for k in wanted.keys() | pin.spec.keys() if pin.spec.get(k) != wanted.get(k)
            )
            why = Why(
                Reason.QUERY_CHANGED,
                ", ".join(diff),
                {k: pin.spec.get(k) for k in diff},
                {k: wanted.get(k) for k in diff},
            )
            return Change(address, Action.UPDATE, (why,))
        return Change(address, Action.NOOP)
    pinned_source = pin.source if pin.source is not None else pin.path
    if pinned_source != label:
        return Change(
            address, Action.UPDATE, (Why(Reason.SOURCE_CHANGED, None, pinned_source, label),)
        )
    reports: list[Why] = []
    if seen.missing:
        cached = "the pin is cached" if seen.cached else "the pin is NOT cached: pull it"
        reports.append(Why(Reason.SOURCE_MISSING, label, None, cached))
    elif seen.problem is not None:
        reports.append(Why(Reason.SOURCE_UNREACHABLE, label, None, seen.problem))
    elif seen.drift is not None and not seen.drift.empty:
        reports.append(Why(Reason.DATA_DRIFT, label, pin.content.digest, seen.drift.summary()))
    return Change(address, Action.NOOP, tuple(reports))
