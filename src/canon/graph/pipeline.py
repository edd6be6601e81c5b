"""The project's graph: which stage feeds which, derived from paths.

A stage B depends on stage A when one of B's deps is, contains, or lies inside
one of A's outputs. Problems are collected and raised together as a
``GraphError`` naming the stages and paths involved:

- a cycle (``train -> evaluate -> train``),
- a dep that no stage produces and that does not exist in the workspace,
- two stages writing one path (or one writing inside the other's output),
- a stage writing into a declared dataset.

Each stage is named with where it is declared (``"train" (canon.yaml:14)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from canon.declare.project import DepKind, Project
from canon.errors import GraphError
from canon.graph.dag import DAG, CycleError


def overlaps(a: str, b: str) -> bool:
    """True when one workspace path is, or lies inside, the other."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


@dataclass(frozen=True)
class Pipeline:
    """Stages in a valid topological order, and the edges between them."""

    dag: DAG[str]
    order: tuple[str, ...]
    producers: Mapping[str, str]  # out path -> stage

    def upstream(self, stage: str) -> list[str]:
        return self.dag.predecessors(stage)

    def downstream(self, stage: str) -> list[str]:
        return self.dag.successors(stage)

    def select(self, targets: Iterable[str]) -> tuple[str, ...]:
        """The targets and everything they need, in order."""
        wanted = set(targets)
        keep = wanted | self.dag.ancestors(wanted)
        return tuple(s for s in self.order if s in keep)


def _producer_of(path: str, outs: Mapping[str, str]) -> list[str]:
    return sorted({stage for out, stage in outs.items() if overlaps(path, out)})


def build_pipeline(project: Project, exists: Callable[[str], bool]) -> Pipeline:
    """Build and check the stage graph. ``exists(path)`` says whether a
    workspace path is present; it is only asked about deps nothing produces."""
    problems: list[str] = []
    producers: dict[str, str] = {}
    stages = project.stages

    def at(name: str) -> str:
        """``"name" (canon.yaml:LINE)``: the stage, and where it is declared."""
        line = stages[name].line
        return f'"{name}" ({project.config_file}:{line})' if line else f'"{name}"'

    for name, stage in stages.items():
        for out in stage.outs:
            for other_out, other in producers.items():
                if other != name and overlaps(out, other_out):
                    problems.append(
                        f'stages {at(other)} and {at(name)} both write "{out}"'
                        if out == other_out
                        else f'stage {at(name)} writes "{out}", which overlaps "{other_out}" '
                        f"written by stage {at(other)}"
                    )
            producers.setdefault(out, name)
        for ds in project.datasets.values():
            for out in stage.outs:
                if overlaps(out, ds.path):
                    problems.append(
                        f'stage {at(name)} writes "{out}", inside dataset "{ds.name}" '
                        f"({ds.path}); declared data is read-only"
                    )

    dag: DAG[str] = DAG()
    for name in stages:
        dag.add_node(name)
    for name, stage in stages.items():
        for dep in stage.deps:
            if dep.kind is DepKind.DATA:
                continue
            makers = _producer_of(dep.path, producers)
            for maker in makers:
                if maker == name:
                    problems.append(f'stage {at(name)} depends on its own output "{dep.path}"')
                else:
                    dag.add_edge(maker, name)
            if not makers and not exists(dep.path):
                problems.append(_missing_dep(at(name), dep.path, producers))
    try:
        order = tuple(dag.topological_order())
    except CycleError as exc:
        cycle = " -> ".join(at(str(n)) for n in exc.cycle)
        problems.append(f"cycle between stages: {cycle}")
        order = tuple(stages)
    if problems:
        raise GraphError(
            f"the pipeline in {project.config_file} has {_count(problems)}",
            problems,
            hint="fix the stages' deps and outs in canon.yaml",
        )
    return Pipeline(dag, order, producers)


def _missing_dep(stage: str, path: str, producers: Mapping[str, str]) -> str:
    text = f'stage {stage} depends on "{path}", which does not exist and no stage produces'
    import difflib  # only for an error message

    close = difflib.get_close_matches(path, list(producers), n=1)
    if close:
        text += f' — did you mean "{close[0]}" (an output of "{producers[close[0]]}")?'
    return text


def _count(problems: list[str]) -> str:
    return "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
