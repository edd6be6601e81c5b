"""Fixtures for the declaration layer: a workspace that writes canon.yaml and
params.yaml from text and loads them, and helpers to find diagnostics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from canon.declare import Project, load_project
from canon.errors import DeclarationError, Diagnostic

# The example from DESIGN.md, limited to what this version supports.
VALID_CANON = """\
project: churn
environment:
  python: "3.11"
  requirements: requirements.lock
data:
  transactions:
    source: ${profile.data_root}/transactions
params: params.yaml
stages:
  features:
    cmd: python -m churn.features --in ${data.transactions} --out build/features
    deps: [src/churn/features.py, data.transactions]
    params: [features.window]
    outs: [build/features]
  train:
    cmd: python -m churn.train --lr ${params.train.lr}
    deps: [src/churn/train.py, build/features]
    params: [train]
    outs: [build/model.joblib]
    metrics: [build/metrics.json]
artifacts:
  base: {kind: base, include: repo}
profiles:
  local: {data_root: data, warehouse: "duckdb:///warehouse.db"}
  prod: {data_root: lake/churn, warehouse: "postgresql://db/churn"}
"""

VALID_PARAMS = """\
features:
  window: 7
train:
  lr: 0.1
  epochs: 3
"""


@dataclass
class Workspace:
    root: Path

    def write(
        self,
        canon: str | bytes | None = None,
        params: str | bytes | None = None,
        files: Mapping[str, str | bytes] | None = None,
    ) -> Workspace:
        all_files: dict[str, str | bytes] = dict(files or {})
        if canon is not None:
            all_files["canon.yaml"] = canon
        if params is not None:
            all_files["params.yaml"] = params
        for name, content in all_files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return self

    def load(self, profile: str | None = None, environ: Mapping[str, str] | None = None) -> Project:
        return load_project(self.root, profile=profile, environ=environ or {})

    def error(
        self, profile: str | None = None, environ: Mapping[str, str] | None = None
    ) -> DeclarationError:
        with pytest.raises(
            DeclarationError, match=r"problem|cannot be read|no canon\.yaml"
        ) as info:
            self.load(profile, environ)
        return info.value


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def diag_at(err: DeclarationError, path: str | None) -> Diagnostic:
    """The one diagnostic at ``path``; fails the test listing all if not exactly one."""
    found = [d for d in err.diagnostics if d.path == path]
    assert len(found) == 1, f"expected one diagnostic at {path!r}, got:\n" + "\n".join(
        d.render() for d in err.diagnostics
    )
    return found[0]


def rendered(err: DeclarationError) -> str:
    return "\n".join(err.details())
