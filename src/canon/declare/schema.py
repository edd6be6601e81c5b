"""The shape of ``canon.yaml``: frozen pydantic models, validated strictly.

These models hold the declaration *as written* (strings with ``${...}`` still
in them). ``canon.declare.resolve`` turns them into the resolved ``Project``
for one profile. ``canon schema`` prints ``ProjectFile.model_json_schema()``.

Unknown fields and wrong types are errors (``extra="forbid"``, strict types):
YAML already gives typed scalars, so ``"0.1"`` is never silently a float.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$"),
    Field(
        description="An identifier: letters, digits, '_' and '-', starting with a letter or '_'."
    ),
]
Scalar = str | int | float | bool
NonEmptyStr = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)


class Environment(_Model):
    """The software environment every stage runs in; part of every stage's key."""

    python: NonEmptyStr | None = Field(
        default=None, description='Python version the project targets, e.g. "3.11".'
    )
    requirements: NonEmptyStr | None = Field(
        default=None,
        description="Pinned requirements lock file; its digest is part of every stage key.",
    )


class Dataset(_Model):
    """A declared dataset: exactly one of ``source`` (a path or an fsspec URL),
    ``from`` (a deterministic subset of another dataset) or ``query`` (a SQL
    query against ``database``). Whatever it is, stages read its *pinned*
    content (``canon.lock``), never the live source."""

    source: NonEmptyStr | None = Field(
        default=None,
        description=(
            "Where the data is: a file or directory in the project, or a URL (s3://, gs://, "
            "az://, https://, file://), usually via ${profile.x}. Never credentials."
        ),
    )
    from_: Name | None = Field(
        default=None, alias="from", description="Subset: the dataset this one is taken from."
    )
    sample: Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None,
        description=(
            "Subset: the fraction of rows (CSV/Parquet file) or files (directory) kept, "
            "chosen deterministically by hashing with seed."
        ),
    )
    filter: NonEmptyStr | None = Field(
        default=None, description='Subset: a SQL boolean expression over a table\'s rows ("y > 0").'
    )
    seed: int = Field(default=0, description="Subset: the seed of the sample's hash.")
    query: NonEmptyStr | None = Field(
        default=None, description="A SQL query; its result is the dataset (canonical row order)."
    )
    database: NonEmptyStr | None = Field(
        default=None,
        description=(
            "Query: a SQLAlchemy URL without credentials, or a DuckDB (.duckdb) / SQLite "
            "(.db, .sqlite) file in the project. Default: warehouse.duckdb."
        ),
    )
    as_of: NonEmptyStr | int | None = Field(
        default=None,
        description=(
            "Query: the snapshot the query reads, bound as :as_of (engines without time "
            "travel use it in WHERE clauses). Quote dates: \"2025-11-01\"."
        ),
    )
    format: Literal["csv", "parquet"] | None = Field(
        default=None, description="Query: how the result is stored (default csv)."
    )
    storage_options: dict[str, Scalar] = Field(
        default_factory=dict,
        description=(
            "fsspec options for a URL source, e.g. {endpoint_url: ${profile.s3_endpoint}}; "
            "never credentials (they come from the environment)."
        ),
    )
    description: str | None = None


class Stage(_Model):
    """One automation: a command, what it reads, which params it uses, what it writes."""

    cmd: NonEmptyStr | list[NonEmptyStr] = Field(
        description=(
            "The command. A string is split like a shell would (quotes respected) but run "
            "without a shell; ${...} is substituted per argument, so values never become code."
        )
    )
    deps: list[NonEmptyStr] = Field(
        default_factory=list, description="Files, directories or data.NAME the stage reads."
    )
    params: list[NonEmptyStr] = Field(
        default_factory=list,
        description="Param keys (train.lr) or whole sections (train) the stage uses.",
    )
    outs: list[NonEmptyStr] = Field(
        default_factory=list, description="Files or directories the stage writes (cached)."
    )
    metrics: list[NonEmptyStr] = Field(
        default_factory=list, description="JSON metric files the stage writes (cached)."
    )
    env: dict[str, Scalar] = Field(
        default_factory=dict,
        description="Environment variables for the command; values may use ${...}.",
    )
    shell: bool = Field(
        default=False,
        description=(
            "Run cmd with sh -c. Interpolated values are passed as environment variables, "
            "never pasted into the script."
        ),
    )
    deterministic: bool = Field(
        default=True, description="Whether the same inputs give bit-identical outputs."
    )
    desc: str | None = None


class Remote(_Model):
    """Where objects live beyond this machine: a directory or an fsspec URL (S3 first).

    Credentials never go here: they come from the environment or the standard
    AWS configuration (``AWS_ACCESS_KEY_ID``, ``~/.aws/credentials``, a role)."""

    url: NonEmptyStr = Field(
        description="A directory (absolute, or relative to the project) or a URL: s3://bucket/prefix."
    )
    endpoint_url: NonEmptyStr | None = Field(
        default=None, description="For S3-compatible stores (MinIO, moto…): http(s)://host:port."
    )
    region: NonEmptyStr | None = Field(default=None, description="The S3 region.")
    jobs: Annotated[int, Field(ge=1, le=256)] | None = Field(
        default=None, description="Transfers at once (default: 8; `-j` overrides)."
    )


class Serve(_Model):
    """How a model server calls the model image (issue 5 serves it over HTTP)."""

    handler: NonEmptyStr = Field(
        description='The function called with the parsed JSON request: "package.module:function".'
    )
    trust_pickle: bool = Field(
        False,
        description="Allow model files that run code when loaded (pickle, joblib); "
        "refused by the model server otherwise. Recorded in the image's provenance.",
    )


class Artifact(_Model):
    """An image canon builds: ``kind: base`` (environment + whole repo at the commit)
    or ``kind: model`` (a base + one layer with the trained outputs)."""

    kind: Literal["base", "model"] = Field(description="base or model.")
    from_: NonEmptyStr | None = Field(
        default=None,
        alias="from",
        description=(
            "base: the image to start from, pinned by digest "
            "(registry/repo@sha256:...), or scratch / omitted; model: the base artifact's name."
        ),
    )
    platform: NonEmptyStr = Field(
        default="linux/amd64", description="Target platform, linux/amd64 or linux/arm64."
    )
    include: Literal["repo"] = Field(
        default="repo", description="What of the repo goes in (base): the whole repo at HEAD."
    )
    exclude: list[NonEmptyStr] = Field(
        default_factory=list,
        description="Extra glob patterns left out of the repo layer (secrets are always left out).",
    )
    pythonpath: list[NonEmptyStr] = Field(
        default_factory=list,
        description="Repo directories put on PYTHONPATH in the image, e.g. [src].",
    )
    entrypoint: list[NonEmptyStr] | None = Field(
        default=None, description="The image's entrypoint (argv)."
    )
    env: dict[str, Scalar] = Field(
        default_factory=dict, description="Environment variables set in the image."
    )
    add: list[NonEmptyStr] = Field(
        default_factory=list,
        description="model: workspace files (stage outputs) added in the model layer.",
    )
    serve: Serve | None = Field(default=None, description="model: how it is served.")


class Resources(_Model):
    """Per replica; Kubernetes requests = limits (a Guaranteed pod)."""

    cpu: NonEmptyStr | None = Field(default=None, description='e.g. "500m" or "1".')
    memory: NonEmptyStr | None = Field(default=None, description='e.g. "512Mi".')


class Deployment(_Model):
    """A model image running somewhere, kept at the declared version by canon."""

    target: Literal["local", "podman", "kubernetes"] = Field(
        description="local: supervised processes on this machine behind a router on port; "
        "podman: the model image in podman containers (--network host) behind that router; "
        "kubernetes: a Deployment + Service rendered into deploy/<name>/."
    )
    artifact: Name = Field(description="The model artifact (kind: model) to run.")
    port: int = Field(default=8080, ge=1, le=65535, description="The port clients use.")
    host: NonEmptyStr = Field(
        default="127.0.0.1",
        description="local, podman: the address the router binds (loopback).",
    )
    replicas: int = Field(default=1, ge=1, le=64, description="Copies of the model server.")
    profile: Name | None = Field(
        default=None, description="The profile whose canon.lock images are deployed."
    )
    resources: Resources | None = Field(default=None, description="kubernetes: per replica.")
    namespace: Name | None = Field(default=None, description="kubernetes: the namespace.")
    image: NonEmptyStr | None = Field(
        default=None,
        description="kubernetes: the image repository "
        "(default: the profile's registry/<artifact>).",
    )
    ready_timeout: float = Field(
        default=30.0, gt=0, le=600, description="Seconds a new version has to pass /readyz."
    )


class ProjectFile(_Model):
    """canon.yaml: the whole declared state of an ML project."""

    project: Name = Field(description="The project's name.")
    environment: Environment = Field(default_factory=Environment)
    data: dict[Name, Dataset] = Field(default_factory=dict)
    params: NonEmptyStr = Field(default="params.yaml", description="The params file.")
    stages: dict[Name, Stage] = Field(default_factory=dict)
    default_profile: Name | None = Field(
        default=None, description="Profile used when neither --profile nor CANON_PROFILE is set."
    )
    profiles: dict[Name, dict[Name, Scalar]] = Field(
        default_factory=dict,
        description="Named sets of values injected as ${profile.x} (local paths vs s3 URLs…).",
    )
    remotes: dict[Name, Remote] = Field(
        default_factory=dict,
        description="Named remotes for push/pull/fetch; a profile picks one with remote: NAME.",
    )
    default_remote: Name | None = Field(
        default=None, description="The remote used when neither -r nor the profile names one."
    )
    artifacts: dict[Name, Artifact] = Field(
        default_factory=dict, description="Images canon builds (kind: base / kind: model)."
    )
    deployments: dict[Name, Deployment] = Field(
        default_factory=dict,
        description="Where a model image runs: target local (supervised processes) or "
        "kubernetes (manifests rendered into deploy/<name>/ for Flux / Argo CD).",
    )
    # Room for later capabilities. They are parsed as mappings now so that a
    # canon.yaml written for a newer canon still loads; later versions type them.
    policies: list[dict[str, Any]] = Field(default_factory=list)


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of canon.yaml, for ``canon schema`` and editors."""
    schema = ProjectFile.model_json_schema()
    return {"$schema": JSON_SCHEMA_DIALECT, **schema, "title": "canon.yaml"}
