"""A memo of resolved declarations, so a no-op ``canon status`` starts fast.

Validating canon.yaml needs pydantic, whose import alone costs ~150 ms, more
than the whole budget of a no-op status. The resolved ``Project`` depends only
on the bytes of canon.yaml and of the params file, on the profile asked for
(``--profile`` / ``CANON_PROFILE``) and on canon's version; so it is stored in
``.canon/declared.json`` under the digest of exactly those inputs and reused
while they are byte-identical. A declaration with problems is never stored:
its errors are recomputed (and reported in full) every time.

The memo is only a cache: a damaged or foreign file is a miss, writes are a
temp file renamed into place, and any failure to write is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from canon import __version__
from canon.declare.project import (
    ArtifactKind,
    ArtifactSpec,
    DataKind,
    DatasetSpec,
    Dep,
    DepKind,
    DeploymentSpec,
    DeployTarget,
    EnvironmentSpec,
    Project,
    QuerySpec,
    RemoteSpec,
    StageSpec,
    SubsetSpec,
)
from canon.errors import CanonError

MEMO = ".canon/declared.json"
_MAX_ENTRIES = 8


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key(config: bytes, profile: str | None, env_profile: str | None, overrides: str = "{}") -> str:
    head = json.dumps([__version__, profile, env_profile, overrides]).encode()
    return _digest(head + b"\0" + config)


def _to_doc(p: Project) -> dict[str, Any]:
    return {
        "name": p.name,
        "profile": p.profile,
        "profile_values": dict(p.profile_values),
        "environment": [p.environment.python, p.environment.requirements],
        "datasets": [_dataset_doc(d) for d in p.datasets.values()],
        "stages": [
            {
                "name": s.name,
                "argv": list(s.argv),
                "env": [list(e) for e in s.env],
                "deps": [[d.kind.value, d.address, d.path] for d in s.deps],
                "params": list(s.params),
                "param_values": [[k, v] for k, v in s.param_values],
                "outs": list(s.outs),
                "metrics": list(s.metrics),
                "shell": s.shell,
                "deterministic": s.deterministic,
                "line": s.line,
            }
            for s in p.stages.values()
        ],
        "params_file": p.params_file,
        "params": dict(p.params),
        "config_file": p.config_file,
        "artifacts": [_artifact_doc(a) for a in p.artifacts.values()],
        "remotes": [[r.name, r.url, r.endpoint_url, r.region, r.jobs] for r in p.remotes.values()],
        "remote": p.remote,
        "deployments": [{**asdict(d), "target": d.target.value} for d in p.deployments.values()],
    }


def _from_doc(root: Path, doc: Mapping[str, Any]) -> Project:
    stages = {}
    for s in doc["stages"]:
        stages[s["name"]] = StageSpec(
            name=s["name"],
            argv=tuple(s["argv"]),
            env=tuple((k, v) for k, v in s["env"]),
            deps=tuple(Dep(DepKind(k), a, p) for k, a, p in s["deps"]),
            params=tuple(s["params"]),
            param_values=tuple((k, v) for k, v in s["param_values"]),
            outs=tuple(s["outs"]),
            metrics=tuple(s["metrics"]),
            shell=bool(s["shell"]),
            deterministic=bool(s["deterministic"]),
            line=s["line"],
        )
    python, requirements = doc["environment"]
    return Project(
        root=root,
        name=doc["name"],
        profile=doc["profile"],
        profile_values=doc["profile_values"],
        environment=EnvironmentSpec(python, requirements),
        datasets={d["name"]: _dataset_from_doc(d) for d in doc["datasets"]},
        stages=stages,
        params_file=doc["params_file"],
        params=doc["params"],
        config_file=doc["config_file"],
        artifacts={a["name"]: _artifact_from_doc(a) for a in doc.get("artifacts", ())},
        remotes={r[0]: RemoteSpec(*r) for r in doc.get("remotes", ())},
        remote=doc.get("remote"),
        deployments={
            d["name"]: DeploymentSpec(**{**d, "target": DeployTarget(d["target"])})
            for d in doc.get("deployments", ())
        },
    )


def _artifact_doc(a: ArtifactSpec) -> dict[str, Any]:
    return {
        "name": a.name,
        "kind": a.kind.value,
        "base_image": a.base_image,
        "base": a.base,
        "platform": a.platform,
        "exclude": list(a.exclude),
        "pythonpath": list(a.pythonpath),
        "entrypoint": None if a.entrypoint is None else list(a.entrypoint),
        "env": [list(e) for e in a.env],
        "add": list(a.add),
        "handler": a.handler,
        "trust_pickle": a.trust_pickle,
        "line": a.line,
    }


def _artifact_from_doc(a: Mapping[str, Any]) -> ArtifactSpec:
    entrypoint = a["entrypoint"]
    return ArtifactSpec(
        name=a["name"],
        kind=ArtifactKind(a["kind"]),
        base_image=a["base_image"],
        base=a["base"],
        platform=a["platform"],
        exclude=tuple(a["exclude"]),
        pythonpath=tuple(a["pythonpath"]),
        entrypoint=None if entrypoint is None else tuple(entrypoint),
        env=tuple((k, v) for k, v in a["env"]),
        add=tuple(a["add"]),
        handler=a["handler"],
        trust_pickle=bool(a.get("trust_pickle", False)),
        line=a["line"],
    )


def _dataset_doc(d: DatasetSpec) -> dict[str, Any]:
    return {
        "name": d.name,
        "source": d.source,
        "path": d.path,
        "kind": d.kind.value,
        "mount": d.mount,
        "storage_options": [list(kv) for kv in d.storage_options],
        "subset": None if d.subset is None else asdict(d.subset),
        "query": None if d.query is None else asdict(d.query),
    }


def _dataset_from_doc(d: Mapping[str, Any]) -> DatasetSpec:
    subset, query = d["subset"], d["query"]
    return DatasetSpec(
        name=d["name"],
        source=d["source"],
        path=d["path"],
        kind=DataKind(d["kind"]),
        mount=d["mount"],
        storage_options=tuple((k, v) for k, v in d["storage_options"]),
        subset=None if subset is None else SubsetSpec(**subset),
        query=None if query is None else QuerySpec(**query),
    )


def _read_memo(root: Path) -> dict[str, Any]:
    try:
        memo = json.loads((root / MEMO).read_bytes())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _params_digest(root: Path, params_file: str) -> str | None:
    try:
        return _digest((root / params_file).read_bytes())
    except OSError:
        return None


def load_project_memoised(
    root: Path,
    *,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Project:
    """``load_project`` with the memo in front of it (same errors, same result).

    ``overrides`` (``-S``) are set on the memoised declaration without loading
    it again when only params values change (``overrides.override_resolved``);
    otherwise they are part of the memo key of a full load."""
    root = Path(root).absolute()
    env = os.environ if environ is None else environ
    try:
        config = (root / "canon.yaml").read_bytes()
    except OSError:
        config = None
    if config is not None:
        memo = _read_memo(root)
        key = _key(config, profile, env.get("CANON_PROFILE"))
        base = _hit(root, memo.get(key))
        if base is not None and overrides:
            from canon.declare.overrides import override_resolved

            # params are plain data: set the overrides on the validated declaration
            found = override_resolved(base, overrides, config)
            if found is not None:
                return found
        elif base is not None:
            return base
        if overrides:
            from canon.declare.overrides import override_resolved, overrides_key

            if base is None:
                # load and remember the declaration itself, so the next sweep point is fast
                with contextlib.suppress(CanonError):
                    found = override_resolved(
                        load_project_memoised(root, profile=profile, environ=environ),
                        overrides,
                        config,
                    )
                    if found is not None:
                        return found
            key = _key(config, profile, env.get("CANON_PROFILE"), overrides_key(overrides))
            hit = _hit(root, memo.get(key))
            if hit is not None:
                return hit

    from canon.declare.loader import load_project

    project = load_project(root, profile=profile, environ=environ, overrides=overrides)
    if config is not None:
        _remember(root, key, project)
    return project


def _hit(root: Path, entry: Any) -> Project | None:
    """The memoised project of ``entry`` if the params file is still the one it saw."""
    if isinstance(entry, dict):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            doc = entry["project"]
            if _params_digest(root, doc["params_file"]) == entry["params"]:
                return _from_doc(root, doc)
    return None


def _remember(root: Path, key: str, project: Project) -> None:
    memo = _read_memo(root)
    memo.pop(key, None)
    while len(memo) >= _MAX_ENTRIES:
        memo.pop(next(iter(memo)))
    memo[key] = {
        "params": _params_digest(root, project.params_file),
        "project": _to_doc(project),
    }
    path = root / MEMO
    with contextlib.suppress(OSError, TypeError, ValueError):
        path.parent.mkdir(exist_ok=True)
        import tempfile  # only when the memo is rewritten

        fd, tmp = tempfile.mkstemp(prefix=".declared.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(memo, f)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def remember_params(
    root: Path,
    project: Project,
    *,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Record ``project`` as the declaration at ``root`` as its files are now.

    For a params file just written from ``project.params`` (an experiment's
    worktree): the next load of ``root`` is then a hit instead of a full load.
    The caller vouches that ``project`` is what ``load_project`` would return.
    """
    root = Path(root).absolute()
    env = os.environ if environ is None else environ
    with contextlib.suppress(OSError):
        config = (root / "canon.yaml").read_bytes()
        _remember(root, _key(config, profile, env.get("CANON_PROFILE")), project)
