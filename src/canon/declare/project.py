"""The resolved project: one profile applied, every ``${...}`` substituted.

This is what the rest of canon works on. All paths are workspace-relative,
normalised POSIX strings that were checked to stay inside the workspace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class DepKind(StrEnum):
    PATH = "path"  # a file or directory in the workspace
    DATA = "data"  # a declared dataset, data.NAME


@dataclass(frozen=True)
class Dep:
    """Something a stage reads. ``address`` is how the lock and the plan name it:
    the relative path for PATH deps, ``data.NAME`` for datasets."""

    kind: DepKind
    address: str
    path: str  # workspace-relative path that holds the content


@dataclass(frozen=True)
class StageSpec:
    name: str
    argv: tuple[str, ...]  # what is executed, without a shell unless shell=True
    env: tuple[tuple[str, str], ...]  # sorted (NAME, value): declared env + interpolation vars
    deps: tuple[Dep, ...]
    params: tuple[str, ...]  # declared keys or sections, as written
    param_values: tuple[tuple[str, Any], ...]  # sorted (key, value) for each declared entry
    outs: tuple[str, ...]  # workspace-relative paths (outs, then metrics)
    metrics: tuple[str, ...]
    shell: bool = False
    deterministic: bool = True
    line: int | None = None  # where the stage is declared in canon.yaml


class DataKind(StrEnum):
    PATH = "path"  # a file or directory in the workspace
    URL = "url"  # anything fsspec reaches: s3://, gs://, az://, https://, file://
    SUBSET = "subset"  # a deterministic subset of another dataset's pinned content
    QUERY = "query"  # the result of a SQL query


DATA_MOUNT = ".canon/data"  # where pinned content is materialised for stages


@dataclass(frozen=True)
class SubsetSpec:
    parent: str  # the dataset's name
    sample: float | None = None
    filter: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class QuerySpec:
    text: str
    database: str  # a SQLAlchemy URL, relative sqlite/duckdb paths made workspace-relative
    as_of: str | int | None = None
    format: str = "csv"


@dataclass(frozen=True)
class DatasetSpec:
    """A resolved dataset. ``mount`` is what ``${data.NAME}`` and a ``data.NAME``
    dep mean: the read-only materialisation of the *pinned* content, under
    ``.canon/data/NAME`` (``.canon/data/NAME/<basename>`` when the source looks
    like one file)."""

    name: str
    source: str  # as resolved (profile applied): a path or URL; "" for subsets and queries
    path: str  # workspace-relative local path for PATH sources, else ""
    kind: DataKind = DataKind.PATH
    mount: str = ""
    storage_options: tuple[tuple[str, str | int | float | bool], ...] = ()
    subset: SubsetSpec | None = None
    query: QuerySpec | None = None

    @property
    def where(self) -> str:
        """The mount, or the default one for specs built without it (tests, old memos)."""
        return self.mount or f"{DATA_MOUNT}/{self.name}"


@dataclass(frozen=True)
class EnvironmentSpec:
    python: str | None
    requirements: str | None  # workspace-relative path


@dataclass(frozen=True)
class RemoteSpec:
    """A declared remote, checked: no credentials in ``url`` or ``endpoint_url``."""

    name: str
    url: str  # a local directory (absolute, or relative to the root) or scheme://...
    endpoint_url: str | None = None
    region: str | None = None
    jobs: int | None = None


class ArtifactKind(StrEnum):
    BASE = "base"  # environment + the whole repo at the commit (+ an optional pinned base image)
    MODEL = "model"  # a base image + one layer with the trained outputs


@dataclass(frozen=True)
class ArtifactSpec:
    """An image canon builds (``artifacts:``), checked and resolved.

    ``base_image`` is a reference pinned by digest (``registry/repo@sha256:...``)
    or None for scratch; it is only set for ``kind: base``. ``base`` is the
    name of the base artifact a model image starts from. ``add`` are
    workspace-relative paths (normalised, inside the workspace).
    """

    name: str
    kind: ArtifactKind
    base_image: str | None = None
    base: str | None = None
    platform: str = "linux/amd64"
    exclude: tuple[str, ...] = ()
    pythonpath: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    add: tuple[str, ...] = ()
    handler: str | None = None  # "package.module:function"
    trust_pickle: bool = False  # serve.trust_pickle: the server may load pickle/joblib files
    line: int | None = None


class DeployTarget(StrEnum):
    LOCAL = "local"
    PODMAN = "podman"
    KUBERNETES = "kubernetes"


@dataclass(frozen=True)
class DeploymentSpec:
    """A declared deployment (``deployments:``), checked: ``artifact`` is a model artifact."""

    name: str
    target: DeployTarget
    artifact: str
    port: int = 8080
    host: str = "127.0.0.1"
    replicas: int = 1
    profile: str | None = None
    cpu: str | None = None
    memory: str | None = None
    namespace: str | None = None
    image: str | None = None
    ready_timeout: float = 30.0
    line: int | None = None


@dataclass(frozen=True)
class Project:
    root: Path
    name: str
    profile: str | None
    profile_values: Mapping[str, Any]
    environment: EnvironmentSpec
    datasets: Mapping[str, DatasetSpec]
    stages: Mapping[str, StageSpec]  # in declaration order
    params_file: str
    params: Mapping[str, Any] = field(default_factory=dict)
    config_file: str = "canon.yaml"
    artifacts: Mapping[str, ArtifactSpec] = field(default_factory=dict)  # in declaration order
    remotes: Mapping[str, RemoteSpec] = field(default_factory=dict)
    remote: str | None = None  # the remote this profile uses (profile remote:, default_remote)
    deployments: Mapping[str, DeploymentSpec] = field(default_factory=dict)


def render_scalar(value: Any) -> str:
    """A YAML scalar as text, as it is substituted into a command: ``true``/``false``
    for booleans, as YAML writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
