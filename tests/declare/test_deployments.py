"""``deployments:``: typed, checked against the artifacts and profiles, all problems at once."""

from __future__ import annotations

import pytest

from canon.declare.memo import load_project_memoised
from canon.declare.project import DeployTarget

from .conftest import Workspace, diag_at

HEAD = """\
project: p
stages:
  train: {cmd: python train.py, outs: [build/model.json]}
artifacts:
  base: {kind: base}
  model: {kind: model, from: base, add: [build/model.json], serve: {handler: "m.serve:predict"}}
  bare: {kind: model, from: base, add: [build/model.json]}
profiles:
  local: {}
  prod: {}
"""


def test_local_and_kubernetes_resolve_and_survive_the_memo(ws: Workspace) -> None:
    ws.write(HEAD + """\
deployments:
  local: {target: local, artifact: model, port: 8080}
  prod:
    target: kubernetes
    artifact: model
    replicas: 3
    profile: prod
    namespace: ml
    resources: {cpu: 500m, memory: 256Mi}
""")
    project = ws.load()
    local, prod = project.deployments["local"], project.deployments["prod"]
    assert local.target is DeployTarget.LOCAL and local.host == "127.0.0.1"
    assert (local.port, local.replicas, local.ready_timeout) == (8080, 1, 30.0)
    assert prod.target is DeployTarget.KUBERNETES
    assert (prod.replicas, prod.profile, prod.namespace) == (3, "prod", "ml")
    assert (prod.cpu, prod.memory) == ("500m", "256Mi")
    assert prod.line == 13
    for _ in range(2):  # the second load comes from the memo
        assert load_project_memoised(ws.root).deployments == project.deployments


@pytest.mark.parametrize(
    ("decl", "path", "message"),
    [
        ("{target: local, artifact: modle}", "deployments.d.artifact", 'unknown artifact "modle"'),
        ("{target: local, artifact: base}", "deployments.d.artifact", "a deployment runs a model"),
        ("{target: local, artifact: bare}", "deployments.d.artifact", "declares no serve"),
        ("{target: local, artifact: model, profile: prd}", "deployments.d.profile",
         'unknown profile "prd"'),
        ("{target: local, artifact: model, host: localhost}", "deployments.d.host",
         "not an IP address"),
        ("{target: local, artifact: model, port: 8080}", "deployments.d.port",
         "already used by deployment other"),
        ("{target: nomad, artifact: model}", "deployments.d.target", "local"),
        ("{target: local, artifact: model, port: 70000}", "deployments.d.port", "65535"),
    ],
)
def test_bad_deployments_are_located(ws: Workspace, decl: str, path: str, message: str) -> None:
    ws.write(HEAD + f"deployments:\n  other: {{target: local, artifact: model}}\n  d: {decl}\n")
    err = ws.error()
    assert message in diag_at(err, path).message
