"""``plan(project, pipeline, observed, options) -> Plan``: pure, no I/O.

For each dataset and stage (in topological order) decide RUN, RESTORE, PIN or
NOOP and say why. Outputs a stage is about to rewrite are "unknown" to the
stages after it: those run with ``UPSTREAM_CHANGED`` and ``apply`` re-checks
their key once the upstream has finished (so an upstream that reproduces the
same bytes does not force its consumers to run: early cut-off). Outputs a
stage is about to *restore* are known exactly, so consumers get exact keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from canon.declare.project import DepKind, Project, StageSpec, render_scalar
from canon.digest import Digest, hash_bytes
from canon.errors import CanonError
from canon.graph.pipeline import Pipeline, overlaps
from canon.plan.change import Action, Change, Plan, Reason, Why
from canon.plan.data import plan_data
from canon.plan.images import plan_images
from canon.plan.key import canonical_json, stage_key
from canon.plan.observed import Observed
from canon.stores.records import Content, ProfileState, StageRecord


@dataclass(frozen=True)
class PlanOptions:
    targets: tuple[str, ...] = ()
    force: bool = False  # run the targets (or every stage) even when up to date


class UnknownTargetError(CanonError):
    code = "plan.unknown_target"


_UNKNOWN = object()  # content a pending RUN will produce: not known until it runs


def plan(project: Project, pipeline: Pipeline, observed: Observed, options: PlanOptions) -> Plan:
    selected = _select(project, pipeline, options.targets)
    state = observed.lock.state(project.profile)
    expected: dict[str, Any] = dict(observed.contents)  # path -> Content | None | _UNKNOWN
    used = {d.address for s in selected for d in project.stages[s].deps if d.kind is DepKind.DATA}
    names = [n for n in project.datasets if not options.targets or f"data.{n}" in used]
    data = plan_data(project, state, observed.data, names)
    changes: list[Change] = list(data.changes)

    forced = set(options.targets or selected) if options.force else set()
    actions: dict[str, Action] = {}
    for name in selected:
        stage = project.stages[name]
        change = _plan_stage(
            stage, state, observed, expected, data.digests, actions, pipeline, name in forced
        )
        actions[name] = change.action
        if change.action is Action.RUN:
            for out in stage.outs:
                expected[out] = _UNKNOWN
        elif change.action is Action.RESTORE:
            outs = _restore_source(stage, state, observed, change.key)
            for out in stage.outs:
                expected[out] = outs.get(out)
        changes.append(change)
    if project.artifacts and not options.targets:
        changes += plan_images(project, state, observed.images, actions)
    if project.deployments and not options.targets:
        from canon.plan.deployments import plan_deployments

        building = {c.name for c in changes if c.kind == "image" and c.action is Action.BUILD}
        changes += plan_deployments(project, state, observed.deployments, building)

    return Plan(
        changes=tuple(changes),
        profile=project.profile,
        fingerprint=fingerprint(project, observed),
        commit=observed.commit,
        targets=tuple(options.targets),
    )


def stage_targets(project: Project, targets: Sequence[str]) -> tuple[str, ...]:
    """The stage names ``targets`` mean (``train`` or ``stage.train``, as plans print
    them), or UnknownTargetError with a did-you-mean."""
    names: list[str] = []
    for t in targets:
        name = t.removeprefix("stage.")
        if name not in project.stages:
            import difflib  # only for an error message

            close = difflib.get_close_matches(name, list(project.stages), n=1)
            known = ", ".join(project.stages) or "none declared"
            raise UnknownTargetError(
                f'unknown stage "{t}"',
                hint=(f'did you mean "{close[0]}"? ' if close else "") + f"stages: {known}",
            )
        names.append(name)
    return tuple(names)


def _select(project: Project, pipeline: Pipeline, targets: tuple[str, ...]) -> tuple[str, ...]:
    if not targets:
        return pipeline.order
    return pipeline.select(stage_targets(project, targets))


def _expected_content(path: str, expected: Mapping[str, Any]) -> Any:
    """The content a dep will have: exact when known, _UNKNOWN when an upstream
    run rewrites it (or rewrites something inside or around it)."""
    for out, value in expected.items():
        if value is _UNKNOWN and overlaps(path, out):
            return _UNKNOWN
    return expected.get(path)


def _plan_stage(
    stage: StageSpec,
    state: ProfileState,
    observed: Observed,
    expected: Mapping[str, Any],
    pins: Mapping[str, Digest | None],
    actions: Mapping[str, Action],
    pipeline: Pipeline,
    forced: bool,
) -> Change:
    address = f"stage.{stage.name}"
    record = state.stages.get(stage.name)
    running = [u for u in pipeline.upstream(stage.name) if actions.get(u) is Action.RUN]
    if running:
        why = [Why(Reason.UPSTREAM_CHANGED, u) for u in running]
        if record is not None:  # and its own inputs that changed too, so the "why" is whole
            for dep in stage.deps:
                content = _expected_content(dep.path, expected)
                if content is None or content is _UNKNOWN:
                    continue
                before = record.deps.get(dep.address)
                if before is None:
                    why.append(Why(Reason.DEP_ADDED, dep.address, None, content.digest))
                elif before != content.digest:
                    why.append(Why(Reason.DEP_CHANGED, dep.address, before, content.digest))
        return Change(address, Action.RUN, tuple(why))

    deps: dict[str, Digest] = {}
    missing: list[Why] = []
    pending = [
        d.address
        for d in stage.deps
        if d.kind is DepKind.DATA and pins.get(d.address[len("data.") :]) is None
    ]
    if pending:  # the pin is made by this apply: the key is known only then
        return Change(address, Action.RUN, tuple(Why(Reason.UPSTREAM_CHANGED, a) for a in pending))
    for dep in stage.deps:
        if dep.kind is DepKind.DATA:  # the pin wins: the pinned digest, never the live source
            pinned = pins.get(dep.address[len("data.") :])
            assert pinned is not None
            deps[dep.address] = pinned
            continue
        content = _expected_content(dep.path, expected)
        if content is None or content is _UNKNOWN:
            missing.append(Why(Reason.DEP_MISSING, dep.address))
        else:
            deps[dep.address] = content.digest
    if missing:
        return Change(address, Action.RUN, tuple(missing))

    key = stage_key(stage, deps, observed.environment)
    if forced:
        return Change(address, Action.RUN, (Why(Reason.FORCED),), key)
    if record is None:
        reasons: tuple[Why, ...] = (Why(Reason.NEVER_RUN),)
    elif record.key != key:
        reasons = tuple(_diff(stage, record, deps, observed.environment))
    else:
        drift = tuple(_output_drift(stage, record, observed.contents))
        if not drift:
            return Change(address, Action.NOOP, (), key)
        restorable = all(c.digest in observed.cached for c in record.outs.values())
        return Change(address, Action.RESTORE if restorable else Action.RUN, drift, key)
    if key in observed.runs:
        return Change(address, Action.RESTORE, (*reasons, Why(Reason.RUN_CACHED)), key)
    return Change(address, Action.RUN, reasons, key)


def _restore_source(
    stage: StageSpec, state: ProfileState, observed: Observed, key: str | None
) -> Mapping[str, Content]:
    if key is not None and Digest(key) in observed.runs:
        return observed.runs[Digest(key)].outs
    record = state.stages.get(stage.name)
    return record.outs if record else {}


def _output_drift(
    stage: StageSpec, record: StageRecord, contents: Mapping[str, Content | None]
) -> Iterator[Why]:
    for out in stage.outs:
        have = contents.get(out)
        want = record.outs.get(out)
        if have is None:
            yield Why(Reason.OUTPUT_MISSING, out)
        elif want is None or have.digest != want.digest:
            yield Why(Reason.OUTPUT_MODIFIED, out, want.digest if want else None, have.digest)


def _diff(
    stage: StageSpec, record: StageRecord, deps: Mapping[str, Digest], environment: Digest
) -> Iterator[Why]:
    found = False
    for why in _cmd_changes(stage, record):
        found = True
        yield why
    if environment != record.environment:
        found = True
        yield Why(Reason.ENV_CHANGED, "environment", record.environment, environment)
    declared_env = {k: v for k, v in stage.env if not k.startswith("CANON_")}
    if declared_env != dict(record.env):
        found = True
        yield Why(Reason.ENV_CHANGED, "env", record.env or None, declared_env or None)
    for addr in sorted(deps.keys() | record.deps.keys()):
        before, after = record.deps.get(addr), deps.get(addr)
        if before is None:
            found = True
            yield Why(Reason.DEP_ADDED, addr, None, after)
        elif after is None:
            found = True
            yield Why(Reason.DEP_REMOVED, addr, before, None)
        elif before != after:
            found = True
            yield Why(Reason.DEP_CHANGED, addr, before, after)
    now = dict(_flatten(dict(stage.param_values)))
    then = dict(_flatten(dict(record.params)))
    for key in sorted(now.keys() | then.keys()):
        if key not in then:
            found = True
            yield Why(Reason.PARAM_ADDED, key, None, now[key])
        elif key not in now:
            found = True
            yield Why(Reason.PARAM_REMOVED, key, then[key], None)
        elif now[key] != then[key] or type(now[key]) is not type(then[key]):
            found = True
            yield Why(Reason.PARAM_CHANGED, key, then[key], now[key])
    if set(stage.outs) != set(record.outs):
        found = True
        yield Why(Reason.OUTS_CHANGED, None, sorted(record.outs), list(stage.outs))
    if not found:  # e.g. the shell flag or output order: still a different command
        yield Why(Reason.CMD_CHANGED)


def _cmd_changes(stage: StageSpec, record: StageRecord) -> list[Why]:
    """CMD_CHANGED with the arguments that differ, unless every difference is a
    changed param value substituted into the command (PARAM_CHANGED says that)."""
    before, after = record.cmd, tuple(stage.argv)
    if before == after:
        return []
    if len(before) != len(after):
        return [Why(Reason.CMD_CHANGED, None, " ".join(before), " ".join(after))]
    now = dict(_flatten(dict(stage.param_values)))
    then = dict(_flatten(dict(record.params)))
    substituted = {
        (render_scalar(then[k]), render_scalar(now[k]))
        for k in now.keys() & then.keys()
        if now[k] != then[k] and not isinstance(now[k], dict | list)
    }
    diffs = [(i, b, a) for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a]
    if all((b, a) in substituted for _, b, a in diffs):
        return []
    return [Why(Reason.CMD_CHANGED, f"argv[{i}]", b, a) for i, b, a in diffs[:3]]


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from _flatten(v, key + ".")
        else:
            yield key, v


def fingerprint(project: Project, observed: Observed) -> str:
    """Everything the plan was computed from. A saved plan whose fingerprint no
    longer matches a fresh observation is stale."""
    doc = {
        "profile": project.profile,
        "stages": {
            n: [
                list(s.argv),
                [list(e) for e in s.env],
                [list(p) for p in s.param_values],
                [d.address for d in s.deps],
                list(s.outs),
            ]
            for n, s in project.stages.items()
        },
        "contents": {p: (c.digest if c else None) for p, c in sorted(observed.contents.items())},
        "environment": observed.environment,
        "lock": _lock_summary(observed.lock.state(project.profile)),
    }
    return hash_bytes(canonical_json(doc))


def _lock_summary(state: ProfileState) -> dict[str, Any]:
    return {
        "stages": {n: r.key for n, r in state.stages.items()},
        "data": {n: r.content.digest for n, r in state.data.items()},
    }
