"""Read-only: are the images recorded in canon.lock still what the declaration asks for?

An image's *key* is a digest over everything that goes into it, so the answer
needs no build (a no-change ``canon build`` answers in milliseconds):

- base: the artifact's declaration, the environment declaration and the
  commit's top-level tree *minus canon.lock* — recording an image in the lock
  and committing it changes the commit, not the image's inputs (otherwise every
  commit of the lock would make the image it records stale);
- model: its declaration and its provenance document: the base image's digest,
  the sha256 of every added file, every stage key, data digest and param value
  recorded in the lock under the profile.

``provenance`` is also exactly what the builder writes to /canon/provenance.json.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from canon.declare.project import ArtifactKind, ArtifactSpec, Project
from canon.digest import Digest, hash_bytes, hash_file
from canon.errors import ImageError
from canon.observe.runtime import runtime
from canon.plan.observed import ImageObservation
from canon.stores.oci.spec import canonical_json
from canon.stores.records import ImageRecord, ProfileState

# bump when what canon puts in an image changes (2: blockwise parallel gzip; 3: the base
# carries the model server runtime, the model image's entrypoint is `canon serve`)
IMAGE_FORMAT = 3
LOCK_FILE = "canon.lock"

NEVER_BUILT = "NEVER_BUILT"
INPUTS_CHANGED = "INPUTS_CHANGED"
IMAGE_MISSING = "IMAGE_MISSING"
UPSTREAM_CHANGED = "UPSTREAM_CHANGED"


@dataclass(frozen=True)
class Commit:
    id: str
    time: int  # committer time, seconds since the epoch (%ct)
    tree: str


@dataclass(frozen=True)
class ImageState:
    """One artifact: the key it should have, what the lock records, and why it differs."""

    name: str
    kind: ArtifactKind
    key: Digest | None  # None when it cannot be known yet (its base must be built first)
    record: ImageRecord | None
    reasons: tuple[str, ...]  # empty: up to date

    @property
    def up_to_date(self) -> bool:
        return not self.reasons


def git(root: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise ImageError("git is not installed", hint="install git") from exc
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise ImageError(
            f"git {args[0]} failed: {lines[-1] if lines else done.returncode}",
            hint="images are built from a commit: `git init`, then commit your project",
        )
    return done.stdout


def resolve_commit(root: Path, rev: str = "HEAD") -> Commit:
    out = git(root, "log", "-1", "--format=%H %ct %T", rev, "--").decode().split()
    if len(out) != 3:
        raise ImageError(f"cannot read commit {rev}", hint="commit your project first")
    return Commit(out[0], int(out[1]), out[2])


def tree_key(root: Path, commit: str, ignore: tuple[str, ...] = (LOCK_FILE,)) -> str:
    """The commit's top-level tree listing minus ``ignore``, hashed."""
    listing = git(root, "ls-tree", "-z", commit).split(b"\0")
    kept = [e for e in listing if e and e.split(b"\t", 1)[-1].decode() not in ignore]
    return hashlib.sha256(b"\0".join(kept)).hexdigest()


def spec_doc(spec: ArtifactSpec) -> dict[str, Any]:
    doc = asdict(spec)
    doc.pop("line", None)
    doc["kind"] = spec.kind.value
    return doc


def key_of(doc: Mapping[str, Any]) -> Digest:
    return hash_bytes(canonical_json({"format": IMAGE_FORMAT, **doc}))


def base_key(root: Path, project: Project, spec: ArtifactSpec, commit: str) -> Digest:
    return key_of(
        {
            "spec": spec_doc(spec),
            "tree": tree_key(root, commit),
            "python": project.environment.python,
            "requirements": project.environment.requirements,
            "runtime": runtime().identity,
        }
    )


def model_provenance(
    root: Path,
    spec: ArtifactSpec,
    state: ProfileState,
    base_digest: Digest,
    commit: str,
    contents: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """What a model image says about itself. The added files are the workspace's, or
    ``contents`` (path -> bytes) when given (``canon build --check``: the recorded ones)."""
    files: dict[str, str] = {}
    for path in spec.add:
        if contents is not None:
            files[path] = hash_bytes(contents[path])
            continue
        full = root / path
        if not full.is_file():
            raise ImageError(
                f"image {spec.name}: {path} does not exist (or is not a file)",
                hint="run `canon apply` to produce it first",
            )
        files[path] = hash_file(full)
    return {
        "artifact": spec.name,
        "kind": "model",
        "commit": commit,
        "base": {"artifact": spec.base, "digest": base_digest},
        "files": files,
        "produced_by": sorted(
            name for name, r in state.stages.items() if any(out in files for out in r.outs)
        ),
        "stages": {n: r.key for n, r in sorted(state.stages.items())},
        "data": {n: r.content.digest for n, r in sorted(state.data.items())},
        "params": {n: dict(r.params) for n, r in sorted(state.stages.items()) if r.params},
        "handler": spec.handler,
        # only when set, so images built before the flag existed keep their keys
        **({"trust_pickle": True} if spec.trust_pickle else {}),
    }


def model_key(spec: ArtifactSpec, provenance: Mapping[str, Any]) -> Digest:
    return key_of({"spec": spec_doc(spec), "provenance": provenance})


def ordered(project: Project) -> list[ArtifactSpec]:
    """Bases before the models built on them."""
    specs = list(project.artifacts.values())
    return [s for s in specs if s.kind is ArtifactKind.BASE] + [
        s for s in specs if s.kind is ArtifactKind.MODEL
    ]


def image_states(
    root: Path,
    project: Project,
    state: ProfileState,
    *,
    has_manifest: Any = None,
    commit: str | None = None,
) -> dict[str, ImageState]:
    """Every artifact's state, bases first. ``has_manifest(digest) -> bool`` says
    whether the recorded image is still stored (None: do not look)."""
    head = commit or resolve_commit(root).id
    found: dict[str, ImageState] = {}
    for spec in ordered(project):
        record = state.images.get(spec.name)
        reasons: list[str] = []
        key: Digest | None = None
        if spec.kind is ArtifactKind.BASE:
            key = base_key(root, project, spec, head)
        else:
            base = found.get(spec.base or "")
            base_record = state.images.get(spec.base or "")
            if base is None or base_record is None or not base.up_to_date:
                reasons.append(f"{UPSTREAM_CHANGED} {spec.base}")
            else:
                try:
                    provenance = model_provenance(
                        root, spec, state, base_record.digest, base_record.commit
                    )
                except ImageError as exc:
                    reasons.append(f"{INPUTS_CHANGED} {exc.message}")
                else:
                    key = model_key(spec, provenance)
        if not reasons:
            if record is None:
                reasons.append(NEVER_BUILT)
            elif record.key != key:
                reasons.append(INPUTS_CHANGED)
            elif has_manifest is not None and not has_manifest(record.digest):
                reasons.append(IMAGE_MISSING)
        found[spec.name] = ImageState(spec.name, spec.kind, key, record, tuple(reasons))
    return found


def observe_images(
    root: Path, project: Project, state: ProfileState
) -> dict[str, ImageObservation]:
    """Each artifact's key now and whether its recorded image is stored, for the planner.

    Never raises for a workspace that cannot say (no commit yet, a model file
    not produced yet): the key is None and ``problem`` says why."""
    if not project.artifacts:
        return {}
    blobs = root / ".canon" / "images" / "blobs" / "sha256"

    def stored(name: str) -> bool:
        record = state.images.get(name)
        return record is not None and (blobs / record.digest[len("sha256:") :]).is_file()

    try:
        head: str | None = resolve_commit(root).id
    except ImageError as exc:
        head, problem = None, exc.message
    found: dict[str, ImageObservation] = {}
    for spec in ordered(project):
        key: Digest | None = None
        why: str | None = None
        try:
            if head is None:
                why = problem
            elif spec.kind is ArtifactKind.BASE:
                key = base_key(root, project, spec, head)
            else:
                base = state.images.get(spec.base or "")
                if base is None:
                    why = f"{spec.base} is not built"
                else:
                    provenance = model_provenance(root, spec, state, base.digest, base.commit)
                    key = model_key(spec, provenance)
        except ImageError as exc:
            why = exc.message
        found[spec.name] = ImageObservation(key, stored(spec.name), why)
    return found
