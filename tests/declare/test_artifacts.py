"""``artifacts:``: typed base and model images, with located diagnostics."""

from __future__ import annotations

from canon.declare.memo import load_project_memoised
from canon.declare.project import ArtifactKind

from .conftest import Workspace, diag_at, rendered

DIGEST = "sha256:" + "ab" * 32
HEAD = """\
project: p
stages:
  train:
    cmd: python train.py
    outs: [build/model.json]
"""


def test_base_and_model_resolve(ws: Workspace) -> None:
    ws.write(HEAD + f"""\
artifacts:
  base:
    kind: base
    from: docker.io/library/python:3.11-slim@{DIGEST}
    exclude: ["*.log"]
    pythonpath: [src]
    env: {{MODE: prod, WORKERS: 2}}
  model:
    kind: model
    from: base
    add: [build/model.json, ./build/model.json]
    serve: {{handler: "weather.serve:predict"}}
""")
    project = ws.load()
    base, model = project.artifacts["base"], project.artifacts["model"]
    assert base.kind is ArtifactKind.BASE
    assert base.base_image == f"docker.io/library/python:3.11-slim@{DIGEST}"
    assert base.platform == "linux/amd64"
    assert base.exclude == ("*.log",) and base.pythonpath == ("src",)
    assert base.env == (("MODE", "prod"), ("WORKERS", "2"))
    assert model.kind is ArtifactKind.MODEL and model.base == "base"
    assert model.add == ("build/model.json",)
    assert model.handler == "weather.serve:predict"
    assert model.line == 13


def test_scratch_and_missing_from_mean_no_base_image(ws: Workspace) -> None:
    ws.write(HEAD + "artifacts:\n  a: {kind: base, from: scratch}\n  b: {kind: base}\n")
    project = ws.load()
    assert project.artifacts["a"].base_image is None
    assert project.artifacts["b"].base_image is None


def test_every_problem_is_reported_with_its_place(ws: Workspace) -> None:
    ws.write(HEAD + """\
artifacts:
  base: {kind: base, from: "python:3.11", add: [x]}
  model:
    kind: model
    from: bsae
    add: [../secret]
    serve: {handler: "not a handler"}
    platform: windows/amd64
  other: {kind: model, from: model, add: [a]}
  bad: {kind: lambda}
""")
    err = ws.error()
    text = rendered(err)
    assert "not pinned by digest" in diag_at(err, "artifacts.base.from").message
    assert "is for kind: model" in diag_at(err, "artifacts.base.add").message
    unknown = diag_at(err, "artifacts.model.from")
    assert 'unknown artifact "bsae"' in unknown.message and unknown.hint == 'did you mean "base"?'
    assert diag_at(err, "artifacts.model.add[0]").line == 11
    assert "package.module:function" in diag_at(err, "artifacts.model.serve.handler").message
    assert "windows/amd64" in diag_at(err, "artifacts.model.platform").message
    assert "not a base" in diag_at(err, "artifacts.other.from").message
    assert "artifacts.bad.kind" in text


def test_model_needs_from_and_add(ws: Workspace) -> None:
    ws.write(HEAD + "artifacts:\n  base: {kind: base}\n  m: {kind: model}\n")
    err = ws.error()
    assert diag_at(err, "artifacts.m.from").hint == "e.g. from: base"
    assert "at least one file" in diag_at(err, "artifacts.m.add").message


def test_unknown_artifact_field_suggests_the_right_one(ws: Workspace) -> None:
    ws.write(HEAD + "artifacts:\n  base: {kind: base, exclud: [x]}\n")
    err = ws.error()
    assert diag_at(err, "artifacts.base.exclud").hint == 'did you mean "exclude"?'


def test_memo_round_trips_artifacts(ws: Workspace) -> None:
    ws.write(HEAD + f"""\
artifacts:
  base: {{kind: base, from: "reg.example:5000/py@{DIGEST}", entrypoint: [python3, -m, x]}}
  model: {{kind: model, from: base, add: [build/model.json], serve: {{handler: "m:f"}}}}
""")
    first = load_project_memoised(ws.root, environ={})
    again = load_project_memoised(ws.root, environ={})
    assert again == first == ws.load()
    assert again.artifacts["base"].entrypoint == ("python3", "-m", "x")
