"""A ``Bundle`` from the workspace: serve the declared model artifact straight from the
files as they are now (``canon serve`` inside a project, for development).

The provenance is what ``canon build`` would put in the image, minus the base digest: the
artifact, the commit checked out, the digest of each ``add:`` file, the stage keys, data
digests and params recorded in canon.lock, and the handler. An image is the canonical
artifact; this mode says ``"source": "workspace"``.
"""

from __future__ import annotations

from pathlib import Path

from canon.declare.memo import load_project_memoised
from canon.declare.project import ArtifactKind, ArtifactSpec
from canon.errors import ServeError
from canon.interfaces.serve.bundle import Bundle
from canon.observe.images import model_provenance, resolve_commit
from canon.stores.lockfile import read_lock


def from_workspace(root: Path, profile: str | None, artifact: str | None) -> Bundle:
    project = load_project_memoised(root, profile=profile)
    models = [s for s in project.artifacts.values() if s.kind is ArtifactKind.MODEL]
    spec: ArtifactSpec | None
    if artifact is not None:
        spec = project.artifacts.get(artifact)
        if spec is None or spec.kind is not ArtifactKind.MODEL:
            names = ", ".join(s.name for s in models) or "none"
            raise ServeError(f'no model artifact "{artifact}"', hint=f"model artifacts: {names}")
    elif len(models) == 1:
        spec = models[0]
    else:
        raise ServeError(
            "which model? " + ("none declared" if not models else "several are declared"),
            hint="declare artifacts: {model: {kind: model, from: base, add: [...], "
            "serve: {handler: pkg.module:function}}} or pass --artifact NAME",
        )
    if spec.handler is None:
        raise ServeError(
            f"artifact {spec.name} declares no serve.handler",
            hint="add serve: {handler: package.module:function}",
        )
    state = read_lock(root).state(project.profile)
    try:
        commit = resolve_commit(root).id
    except Exception:  # not a git repo or no commit yet: still servable for development
        commit = ""
    provenance = model_provenance(root, spec, state, base_digest=None, commit=commit)  # type: ignore[arg-type]
    provenance["source"] = "workspace"
    base = project.artifacts.get(spec.base or "")
    pythonpath = tuple(root / p for p in (base.pythonpath if base else ())) or (root / "src",)
    return Bundle(
        repo=root,
        handler=spec.handler,
        provenance=provenance,
        pythonpath=(*pythonpath, root),
        source="workspace",
        env=dict(spec.env),
    )
