"""Table-driven tests of the pure planner: (declared, observed, lock) -> changes and reasons."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from canon.declare.project import (
    DataKind,
    DatasetSpec,
    Dep,
    DepKind,
    EnvironmentSpec,
    Project,
    QuerySpec,
    StageSpec,
    SubsetSpec,
)
from canon.digest import Digest, hash_bytes
from canon.graph.pipeline import build_pipeline
from canon.plan.change import Action, Plan, Reason
from canon.plan.data import pin_spec
from canon.plan.key import stage_key
from canon.plan.observed import DataObservation, Observed
from canon.plan.planner import PlanOptions, UnknownTargetError, plan
from canon.stores.records import (
    Content,
    DatasetRecord,
    Lock,
    ProfileState,
    RunRecord,
    StageRecord,
    SubsetOf,
)
from canon.stores.sourceindex import Drift

ENV = hash_bytes(b"env")


def d(text: str) -> Digest:
    return hash_bytes(text.encode())


def file(text: str) -> Content:
    return Content(d(text), len(text), 1, False)


def stage(name: str, deps: list[str], outs: list[str], params: dict[str, Any] | None = None,
          argv: tuple[str, ...] | None = None) -> StageSpec:
    return StageSpec(
        name=name,
        argv=argv or ("python", f"{name}.py"),
        env=(),
        deps=tuple(Dep(DepKind.DATA, x, "data/raw.csv") if x.startswith("data.")
                   else Dep(DepKind.PATH, x, x) for x in deps),
        params=tuple(params or {}),
        param_values=tuple(sorted((params or {}).items())),
        outs=tuple(outs),
        metrics=(),
    )


def project(*stages: StageSpec, data: bool = True) -> Project:
    return Project(
        root=Path("/nowhere"), name="p", profile="local", profile_values={},
        environment=EnvironmentSpec(None, None),
        datasets={"raw": DatasetSpec("raw", "data/raw.csv", "data/raw.csv")} if data else {},
        stages={s.name: s for s in stages},
        params_file="params.yaml",
    )


# features <- data.raw, src/f.py ; train <- features.csv, src/t.py ; report <- src/r.py (independent)
FEATURES = stage("features", ["data.raw", "src/f.py"], ["build/features.csv"], {"features.window": 3})
TRAIN = stage("train", ["build/features.csv", "src/t.py"], ["build/model.json"], {"train.lr": 0.1})
REPORT = stage("report", ["src/r.py"], ["build/report.txt"])
PROJECT = project(FEATURES, TRAIN, REPORT)

WORLD = {
    "data/raw.csv": file("raw"),
    "src/f.py": file("f"), "src/t.py": file("t"), "src/r.py": file("r"),
    "build/features.csv": file("features"), "build/model.json": file("model"),
    "build/report.txt": file("report"),
}


def record(s: StageSpec, world: dict[str, Content | None]) -> StageRecord:
    deps = {dep.address: world[dep.path].digest for dep in s.deps}  # type: ignore[union-attr]
    return StageRecord(
        key=stage_key(s, deps, ENV), cmd=s.argv, environment=ENV, deps=deps,
        params=dict(s.param_values), outs={o: world[o] for o in s.outs},  # type: ignore[misc]
    )


def clean_lock(world: dict[str, Content | None] = WORLD) -> Lock:
    state = ProfileState(
        environment=ENV,
        data={"raw": DatasetRecord("data/raw.csv", WORLD["data/raw.csv"])},  # type: ignore[arg-type]
        stages={s.name: record(s, world) for s in (FEATURES, TRAIN, REPORT)},
    )
    return Lock({"local": state})


def run_plan(proj: Project = PROJECT, world: dict[str, Content | None] | None = None,
             lock: Lock | None = None, env: Digest = ENV, runs: dict[Digest, RunRecord] | None = None,
             cached: frozenset[Digest] | None = None, data: dict[str, DataObservation] | None = None,
             **opts: Any) -> Plan:
    world = dict(WORLD if world is None else world)
    raw = world.get("data/raw.csv")
    seen = {"raw": DataObservation(source=raw, missing=raw is None)} if data is None else data
    observed = Observed(
        lock=clean_lock() if lock is None else lock, contents=world, environment=env,
        runs=runs or {}, cached=frozenset(c.digest for c in WORLD.values() if c) if cached is None else cached,
        data=seen,
    )
    pipeline = build_pipeline(proj, lambda p: True)
    return plan(proj, pipeline, observed, PlanOptions(**opts))


def summary(p: Plan) -> dict[str, tuple[str, list[str]]]:
    return {c.address: (c.action.value, [w.describe() for w in c.reasons]) for c in p.pending}


def repinned(text: str) -> Lock:
    state = clean_lock().state("local")
    return Lock({"local": state.with_dataset("raw", DatasetRecord("data/raw.csv", file(text)))})


CASES: list[tuple[str, dict[str, Any], dict[str, tuple[str, list[str]]]]] = [
    ("clean", {}, {}),
    ("never run", {"lock": Lock()}, {
        "data.raw": ("pin", ["DATA_NEW data/raw.csv"]),
        "stage.features": ("run", ["NEVER_RUN"]),
        "stage.train": ("run", ["UPSTREAM_CHANGED features"]),
        "stage.report": ("run", ["NEVER_RUN"]),
    }),
    ("code change", {"world": {**WORLD, "src/t.py": file("t2")}}, {
        "stage.train": ("run", [f"DEP_CHANGED src/t.py {d('t')[7:19]} -> {d('t2')[7:19]}"]),
    }),
    ("param change", {"proj": project(replace(FEATURES, param_values=(("features.window", 5),)),
                                      TRAIN, REPORT)}, {
        "stage.features": ("run", ["PARAM_CHANGED features.window 3 -> 5"]),
        "stage.train": ("run", ["UPSTREAM_CHANGED features"]),
    }),
    ("command change", {"proj": project(FEATURES, TRAIN, replace(REPORT, argv=("python", "r2.py")))}, {
        "stage.report": ("run", ["CMD_CHANGED argv[1] report.py -> r2.py"]),
    }),
    ("environment change", {"env": hash_bytes(b"env2")}, {
        "stage.features": ("run", [f"ENV_CHANGED environment {ENV[7:19]} -> {hash_bytes(b'env2')[7:19]}"]),
        "stage.train": ("run", ["UPSTREAM_CHANGED features"]),
        "stage.report": ("run", [f"ENV_CHANGED environment {ENV[7:19]} -> {hash_bytes(b'env2')[7:19]}"]),
    }),
    ("output deleted, cached", {"world": {**WORLD, "build/report.txt": None}}, {
        "stage.report": ("restore", ["OUTPUT_MISSING build/report.txt"]),
    }),
    ("output deleted, not cached", {"world": {**WORLD, "build/report.txt": None},
                                    "cached": frozenset()}, {
        "stage.report": ("run", ["OUTPUT_MISSING build/report.txt"]),
    }),
    ("output edited", {"world": {**WORLD, "build/model.json": file("hacked")}}, {
        "stage.train": ("restore", [f"OUTPUT_MODIFIED build/model.json {d('model')[7:19]} -> {d('hacked')[7:19]}"]),
    }),
    # The pin wins: a source that changed is reported (see test_drift_is_reported_not_applied),
    # nothing is re-pinned and nothing runs.
    ("data changed at the source", {"world": {**WORLD, "data/raw.csv": file("raw2")}}, {}),
    ("data re-pinned on purpose", {"lock": repinned("raw2")}, {
        "stage.features": ("run", [f"DEP_CHANGED data.raw {d('raw')[7:19]} -> {d('raw2')[7:19]}"]),
        "stage.train": ("run", ["UPSTREAM_CHANGED features"]),
    }),
    ("declared source changed", {"proj": replace(PROJECT, datasets={
        "raw": DatasetSpec("raw", "data/raw2.csv", "data/raw2.csv")})}, {
        "data.raw": ("update", ["SOURCE_CHANGED data/raw.csv -> data/raw2.csv"]),
    }),
    ("targets select ancestors only", {"lock": Lock(), "targets": ("features",)}, {
        "data.raw": ("pin", ["DATA_NEW data/raw.csv"]),
        "stage.features": ("run", ["NEVER_RUN"]),
    }),
    ("force", {"force": True, "targets": ("report",)}, {"stage.report": ("run", ["FORCED"])}),
]


@pytest.mark.parametrize(("label", "kwargs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_plan_table(label: str, kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    assert summary(run_plan(**kwargs)) == expected


def test_reverted_param_restores_from_run_cache() -> None:
    changed = replace(REPORT, param_values=(("report.top", 5),), params=("report.top",))
    deps = {"src/r.py": WORLD["src/r.py"].digest}  # type: ignore[union-attr]
    key = stage_key(changed, deps, ENV)
    runs = {key: RunRecord(key, {"build/report.txt": file("report-top5")})}
    result = run_plan(proj=project(FEATURES, TRAIN, changed), runs=runs)
    change = result.get("stage.report")
    assert change is not None and change.action is Action.RESTORE
    assert [w.reason for w in change.reasons] == [Reason.PARAM_ADDED, Reason.RUN_CACHED]


def test_restore_upstream_gives_downstream_exact_key() -> None:
    # features' output was deleted but is cached: train's key is computed from the restored content
    result = run_plan(world={**WORLD, "build/features.csv": None})
    assert summary(result) == {"stage.features": ("restore", ["OUTPUT_MISSING build/features.csv"])}


def test_section_param_diff_reports_leaf_keys() -> None:
    s1 = replace(TRAIN, params=("train",), param_values=(("train", {"lr": 0.1, "epochs": 3}),))
    s2 = replace(s1, param_values=(("train", {"lr": 0.2, "epochs": 3}),))
    lock = Lock({"local": replace(clean_lock().state("local"),
                                  stages={**clean_lock().state("local").stages,
                                          "train": record(s1, dict(WORLD))})})
    result = run_plan(proj=project(FEATURES, s2, REPORT), lock=lock)
    assert summary(result) == {"stage.train": ("run", ["PARAM_CHANGED train.lr 0.1 -> 0.2"])}


def test_param_type_change_is_a_change() -> None:
    s1 = replace(REPORT, params=("r",), param_values=(("r", 1),))
    s2 = replace(REPORT, params=("r",), param_values=(("r", 1.0),))
    lock = Lock({"local": replace(clean_lock().state("local"),
                                  stages={**clean_lock().state("local").stages,
                                          "report": record(s1, dict(WORLD))})})
    result = run_plan(proj=project(FEATURES, TRAIN, s2), lock=lock)
    assert summary(result) == {"stage.report": ("run", ["PARAM_CHANGED r 1 -> 1.0"])}


def test_unknown_target_suggests() -> None:
    with pytest.raises(UnknownTargetError, match='unknown stage "trian"'):
        run_plan(targets=("trian",))


def test_plan_round_trips_as_json() -> None:
    result = run_plan(lock=Lock())
    assert Plan.from_dict(result.to_dict()) == result


def test_fingerprint_tracks_workspace() -> None:
    a = run_plan()
    b = run_plan(world={**WORLD, "src/r.py": file("r2")})
    assert a.fingerprint != b.fingerprint
    assert run_plan().fingerprint == a.fingerprint


def test_drift_is_reported_not_applied() -> None:
    drift = Drift(added=("b.csv",), changed=("a.csv",))
    result = run_plan(data={"raw": DataObservation(source=file("raw2"), drift=drift)})
    assert result.up_to_date and result.drift
    (report,) = result.reports
    assert report.address == "data.raw"
    assert [w.describe() for w in report.reasons] == [
        "DATA_DRIFT data/raw.csv: 1 added (b.csv); 1 changed (a.csv)"
    ]


def test_missing_source_with_a_pin_is_a_report() -> None:
    result = run_plan(world={**WORLD, "data/raw.csv": None},
                      data={"raw": DataObservation(missing=True, cached=True)})
    assert result.up_to_date
    assert [w.reason for c in result.reports for w in c.reasons] == [Reason.SOURCE_MISSING]


SMALL = DatasetSpec("small", "", "", kind=DataKind.SUBSET, mount=".canon/data/small/raw.csv",
                    subset=SubsetSpec("raw", sample=0.5, seed=1))
QUERY = DatasetSpec("q", "", "", kind=DataKind.QUERY, mount=".canon/data/q/q.csv",
                    query=QuerySpec("SELECT 1", "duckdb:///w.duckdb", "2025-01-01"))


def with_data(*extra: DatasetSpec, stage_deps: tuple[str, ...] = ()) -> Project:
    stages = [stage("use", list(stage_deps), ["build/use.txt"])] if stage_deps else []
    return replace(project(FEATURES, TRAIN, REPORT, *stages),
                   datasets={**PROJECT.datasets, **{x.name: x for x in extra}})


def subset_lock(parent_digest: Digest, spec: dict[str, Any] | None = None) -> Lock:
    state = clean_lock().state("local")
    rec = DatasetRecord("", file("small"), subset_of=SubsetOf("raw", parent_digest),
                        spec=pin_spec(SMALL) if spec is None else spec)
    return Lock({"local": state.with_dataset("small", rec)})


def test_subset_is_pinned_after_its_parent_and_rederived_when_the_parent_is_repinned() -> None:
    proj = with_data(SMALL)
    assert summary(run_plan(proj=proj, lock=Lock()))["data.small"] == (
        "pin", ["DATA_NEW sample 0.5 of data.raw (seed 1)"])
    assert [c.address for c in run_plan(proj=proj, lock=Lock()).changes][:2] == ["data.raw", "data.small"]
    assert summary(run_plan(proj=proj, lock=subset_lock(d("raw")))) == {}
    stale = summary(run_plan(proj=proj, lock=subset_lock(d("old"))))
    assert stale == {"data.small": ("pin", [f"UPSTREAM_CHANGED data.raw {d('old')[7:19]} -> {d('raw')[7:19]}"])}
    changed = summary(run_plan(proj=proj, lock=subset_lock(d("raw"), {"seed": 2, "sample": 0.5})))
    assert changed["data.small"][0] == "pin" and changed["data.small"][1][0].startswith("SUBSET_CHANGED")


def test_stage_on_a_subset_waits_for_its_pin() -> None:
    proj = with_data(SMALL, stage_deps=("data.small",))
    result = summary(run_plan(proj=proj, lock=subset_lock(d("old"))))
    assert result["stage.use"] == ("run", ["UPSTREAM_CHANGED data.small"])


def test_changed_query_needs_data_update() -> None:
    state = clean_lock().state("local")
    old = replace(QUERY, query=QuerySpec("SELECT 1", "duckdb:///w.duckdb", "2024-01-01"))
    lock = Lock({"local": state.with_dataset("q", DatasetRecord("", file("q"), spec=pin_spec(old)))})
    result = summary(run_plan(proj=with_data(QUERY), lock=lock))
    assert result == {"data.q": ("update", ["QUERY_CHANGED as_of {'as_of': '2024-01-01'} -> {'as_of': '2025-01-01'}"])}


def test_param_substituted_into_the_command_is_a_param_change_only() -> None:
    def train(lr: float) -> StageSpec:
        return replace(TRAIN, argv=("python", "train.py", "--lr", str(lr)),
                       param_values=(("train.lr", lr),))

    lock = Lock({"local": replace(clean_lock().state("local"),
                                  stages={**clean_lock().state("local").stages,
                                          "train": record(train(0.1), dict(WORLD))})})
    result = run_plan(proj=project(FEATURES, train(0.2), REPORT), lock=lock)
    assert summary(result) == {"stage.train": ("run", ["PARAM_CHANGED train.lr 0.1 -> 0.2"])}


def test_downstream_of_a_running_stage_also_names_its_own_changed_deps() -> None:
    # prep and train both read src/t.py: train runs because prep runs, *and* its dep changed
    prep = stage("prep", ["src/t.py"], ["build/p.txt"])
    train = stage("train", ["build/p.txt", "src/t.py"], ["build/m.txt"])
    world = {**WORLD, "build/p.txt": file("p"), "build/m.txt": file("m")}
    lock = Lock({"local": ProfileState(environment=ENV, stages={
        "prep": record(prep, world), "train": record(train, world)})})
    result = run_plan(proj=project(prep, train, data=False), world={**world, "src/t.py": file("t2")},
                      lock=lock)
    assert summary(result)["stage.train"] == (
        "run", ["UPSTREAM_CHANGED prep", f"DEP_CHANGED src/t.py {d('t')[7:19]} -> {d('t2')[7:19]}"])
