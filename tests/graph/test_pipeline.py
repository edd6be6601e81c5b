from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from canon.declare.project import DatasetSpec, Dep, DepKind, EnvironmentSpec, Project, StageSpec
from canon.errors import GraphError
from canon.graph.dag import DAG, CycleError
from canon.graph.pipeline import build_pipeline
from canon.graph.render import render_dot, render_mermaid, render_text


def st(name: str, deps: list[str], outs: list[str]) -> StageSpec:
    return StageSpec(name, ("true",), (), tuple(
        Dep(DepKind.DATA, x, "data/d") if x.startswith("data.") else Dep(DepKind.PATH, x, x)
        for x in deps), (), (), tuple(outs), ())


def proj(*stages: StageSpec) -> Project:
    return Project(Path("/x"), "p", None, {}, EnvironmentSpec(None, None),
                   {"d": DatasetSpec("d", "data/d", "data/d")}, {s.name: s for s in stages},
                   "params.yaml")


def test_dag_orders_and_finds_cycles() -> None:
    g: DAG[str] = DAG()
    for a, b in [("a", "b"), ("b", "c"), ("a", "c")]:
        g.add_edge(a, b)
    assert g.topological_order() == ["a", "b", "c"]
    assert g.ancestors(["c"]) == {"a", "b"}
    g.add_edge("c", "a")
    with pytest.raises(CycleError, match=r"a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c"):
        g.topological_order()


def test_edges_from_paths_including_directories() -> None:
    p = build_pipeline(proj(st("prep", ["data.d"], ["build/feat"]),
                            st("train", ["build/feat/x.csv"], ["build/model"]),
                            st("report", ["build"], ["report.md"])), lambda _: True)
    assert p.order == ("prep", "train", "report")
    assert set(p.upstream("report")) == {"prep", "train"}
    assert p.select(["train"]) == ("prep", "train")


def test_all_problems_reported_by_name() -> None:
    with pytest.raises(GraphError) as info:
        build_pipeline(proj(st("a", ["b.txt"], ["a.txt"]), st("b", ["a.txt"], ["b.txt"]),
                            st("c", ["nope.txt"], ["a.txt"]), st("w", [], ["data/d/x"])),
                       lambda _: False)
    problems = "\n".join(info.value.problems)
    assert 'stages "a" and "c" both write "a.txt"' in problems
    assert 'stage "c" depends on "nope.txt", which does not exist' in problems
    assert 'stage "w" writes "data/d/x", inside dataset "d"' in problems
    assert "cycle between stages" in problems
    assert str(info.value).startswith("the pipeline in canon.yaml has 4 problems")


def test_missing_dep_suggests_an_output() -> None:
    with pytest.raises(GraphError) as info:
        build_pipeline(proj(st("a", [], ["build/model.json"]), st("b", ["build/modle.json"], [])),
                       lambda _: False)
    assert 'did you mean "build/model.json" (an output of "a")' in info.value.problems[0]


def test_renderers() -> None:
    project = proj(st("prep", ["data.d"], ["f"]), st("train", ["f"], ["m"]))
    p = build_pipeline(project, lambda _: True)
    assert render_text(project, p).splitlines() == ["prep <- data.d  [f]", "train <- prep  [m]"]
    assert "data_d --> prep" in render_mermaid(project, p)
    assert '"prep" -> "train";' in render_dot(project, p)


def at_line(spec: StageSpec, line: int) -> StageSpec:
    return replace(spec, line=line)


@pytest.mark.parametrize(("stages", "problem"), [
    ([at_line(st("a", [], ["o"]), 3), at_line(st("b", [], ["o"]), 8)],
     'stages "a" (canon.yaml:3) and "b" (canon.yaml:8) both write "o"'),
    ([at_line(st("a", [], ["build"]), 3), at_line(st("b", [], ["build/x"]), 8)],
     'stage "b" (canon.yaml:8) writes "build/x", which overlaps "build" written by stage '
     '"a" (canon.yaml:3)'),
    ([at_line(st("a", ["nope.txt"], ["o"]), 5)],
     'stage "a" (canon.yaml:5) depends on "nope.txt", which does not exist'),
    ([at_line(st("a", ["o"], ["o"]), 5)], 'stage "a" (canon.yaml:5) depends on its own output "o"'),
    ([at_line(st("w", [], ["data/d/x"]), 9)], 'stage "w" (canon.yaml:9) writes "data/d/x", inside'),
])
def test_pipeline_problems_name_each_stage_with_file_and_line(
    stages: list[StageSpec], problem: str
) -> None:
    with pytest.raises(GraphError, match=r"the pipeline in canon\.yaml has") as info:
        build_pipeline(proj(*stages), lambda _: False)
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_a_cycle_names_each_stage_with_file_and_line() -> None:
    with pytest.raises(GraphError) as info:
        build_pipeline(proj(at_line(st("a", ["b.txt"], ["a.txt"]), 3),
                            at_line(st("b", ["a.txt"], ["b.txt"]), 8)), lambda _: False)
    a, b = '"a" (canon.yaml:3)', '"b" (canon.yaml:8)'
    assert info.value.problems in (
        (f"cycle between stages: {a} -> {b} -> {a}",), (f"cycle between stages: {b} -> {a} -> {b}",)
    )
