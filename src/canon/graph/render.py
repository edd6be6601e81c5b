"""Render the project graph as text, Mermaid or Graphviz dot (pure functions)."""

from __future__ import annotations

import json

from canon.declare.project import DepKind, Project
from canon.graph.pipeline import Pipeline


def _edges(project: Project, pipeline: Pipeline) -> list[tuple[str, str]]:
    edges: list[tuple[str, str]] = []
    for name in pipeline.order:
        stage = project.stages[name]
        for dep in stage.deps:
            if dep.kind is DepKind.DATA:
                edges.append((dep.address, name))
        for up in pipeline.upstream(name):
            edges.append((up, name))
    return edges


def _nodes(project: Project, pipeline: Pipeline) -> list[str]:
    used = {d.address for s in project.stages.values() for d in s.deps if d.kind is DepKind.DATA}
    return [f"data.{n}" for n in project.datasets if f"data.{n}" in used] + list(pipeline.order)


def render_text(project: Project, pipeline: Pipeline) -> str:
    lines: list[str] = []
    for name in pipeline.order:
        stage = project.stages[name]
        ups = [d.address for d in stage.deps if d.kind is DepKind.DATA] + pipeline.upstream(name)
        outs = ", ".join(stage.outs) or "no outputs"
        src = f" <- {', '.join(ups)}" if ups else ""
        lines.append(f"{name}{src}  [{outs}]")
    return "\n".join(lines)


def _ident(node: str) -> str:
    return node.replace(".", "_").replace("-", "_")


def render_mermaid(project: Project, pipeline: Pipeline) -> str:
    lines = ["flowchart TD"]
    for node in _nodes(project, pipeline):
        shape = f'[("{node}")]' if node.startswith("data.") else f'["{node}"]'
        lines.append(f"    {_ident(node)}{shape}")
    lines += [f"    {_ident(a)} --> {_ident(b)}" for a, b in _edges(project, pipeline)]
    return "\n".join(lines)


def render_dot(project: Project, pipeline: Pipeline) -> str:
    lines = ["digraph canon {", "    rankdir=TB;"]
    for node in _nodes(project, pipeline):
        shape = "cylinder" if node.startswith("data.") else "box"
        lines.append(f"    {json.dumps(node)} [shape={shape}];")
    lines += [f"    {json.dumps(a)} -> {json.dumps(b)};" for a, b in _edges(project, pipeline)]
    lines.append("}")
    return "\n".join(lines)
