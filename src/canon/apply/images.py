"""Build, check, push and pull images, and record them in canon.lock.

The flows the CLI calls for ``canon build``, ``canon images``,
``canon push-image`` and ``canon pull-image``. Like ``apply``, these are the
writers: they hold the workspace lock, write blobs into ``.canon/images``
(verified, atomic) and then canon.lock (atomic rename), in that order, so a
crash leaves an old-or-new lock that only names images that are stored.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from canon.declare.memo import load_project_memoised
from canon.declare.project import ArtifactKind, ArtifactSpec, Project
from canon.digest import Digest
from canon.errors import CanonError, ImageError, StateError
from canon.events import Emit, ImageBuilt, Notice
from canon.executors.image.builder import Built, FetchBase, ImageBuilder, ReadFile
from canon.executors.image.repo import tracked_changes
from canon.observe.images import ImageState, image_states, resolve_commit
from canon.stores.lockfile import read_lock, write_lock
from canon.stores.objects import ObjectStore
from canon.stores.oci import spec as oci
from canon.stores.oci.layout import ImageLayout
from canon.stores.records import ImageRecord, Lock, ProfileState

IMAGES_DIR = ".canon/images"
CHECK_PREFIX = "check-"  # .canon/check-*: a `build --check` scratch layout (gc removes stale ones)


class ImageCheckError(CanonError):
    code = "image.not_reproducible"
    exit_code = 1


@dataclass(frozen=True)
class BuildResult:
    built: tuple[Built, ...]
    states: dict[str, ImageState]


def layout_of(root: Path) -> ImageLayout:
    return ImageLayout(root / IMAGES_DIR)


def _select(project: Project, names: Sequence[str]) -> list[str]:
    """The named artifacts plus the bases they are built on, bases first."""
    if not project.artifacts:
        raise ImageError(
            "this project declares no artifacts",
            hint="declare images under artifacts: (kind: base / kind: model) in canon.yaml",
        )
    wanted: set[str] = set()
    for name in names or project.artifacts:
        spec = project.artifacts.get(name)
        if spec is None:
            from canon.declare.diagnostics import did_you_mean

            raise ImageError(
                f'no artifact named "{name}"',
                hint=did_you_mean(name, project.artifacts)
                or f"declared: {', '.join(project.artifacts)}",
            )
        wanted.add(name)
        if spec.base:
            wanted.add(spec.base)
    order = [s.name for s in project.artifacts.values() if s.kind is ArtifactKind.BASE]
    order += [s.name for s in project.artifacts.values() if s.kind is ArtifactKind.MODEL]
    return [n for n in order if n in wanted]


def _record(built: Built) -> ImageRecord:
    return ImageRecord(built.manifest.digest, built.key, built.commit, built.size, built.base)


def _built_from_record(spec: ArtifactSpec, record: ImageRecord, layout: ImageLayout) -> Built:
    data = layout.read_bytes(record.digest)
    manifest = oci.parse_manifest(data)
    return Built(
        spec.name,
        spec.kind,
        oci.Descriptor(oci.MANIFEST, record.digest, len(data)),
        manifest.layers,
        record.key,
        record.commit,
        record.base,
        reused=True,
    )


def build_images(
    root: Path,
    *,
    profile: str | None,
    names: Sequence[str] = (),
    force: bool = False,
    emit: Emit,
    fetch_base: FetchBase | None = None,
) -> BuildResult:
    """Build what is out of date (or everything named, with ``force``) and record it,
    holding the workspace lock."""
    from canon.stores.repolock import RepoLock

    with RepoLock(root / ".canon" / "apply.lock") as repo_lock:
        repo_lock.acquire(["canon", "build", *names])
        return build_locked(
            root, profile=profile, names=names, force=force, emit=emit, fetch_base=fetch_base
        )


def build_locked(
    root: Path,
    *,
    profile: str | None,
    names: Sequence[str] = (),
    force: bool = False,
    emit: Emit,
    fetch_base: FetchBase | None = None,
) -> BuildResult:
    """``build_images`` for a caller that already holds the workspace lock (apply)."""
    project = load_project_memoised(root, profile=profile)
    selected = _select(project, names)
    layout = layout_of(root)
    lock = read_lock(root)
    state = lock.state(project.profile)
    commit = resolve_commit(root)
    states = image_states(root, project, state, has_manifest=layout.has_blob, commit=commit.id)
    dirty = tracked_changes(root)
    built: list[Built] = []
    current: dict[str, Built] = {}
    builder = ImageBuilder(root, project, layout, state, _fetcher(root, fetch_base))
    for name in selected:
        spec = project.artifacts[name]
        st = states[name]
        record = state.images.get(name)
        if st.up_to_date and record is not None and not force:
            current[name] = _built_from_record(spec, record, layout)
            emit(ImageBuilt(name, record.digest, "up-to-date", record.size))
            continue
        if dirty and spec.kind is ArtifactKind.BASE:
            emit(
                Notice(
                    f"image {name}: built from commit {commit.id[:12]}; "
                    f"{len(dirty)} uncommitted change(s) are not in it "
                    f"({', '.join(dirty[:3])})"
                )
            )
        started = time.monotonic()
        if spec.kind is ArtifactKind.BASE:
            result = builder.build_base(spec, commit)
        else:
            result = builder.build_model(spec, current[spec.base or ""])
        for notice in result.notices:
            emit(Notice(notice))
        current[name] = result
        built.append(result)
        state = state.with_image(name, _record(result))
        builder.state = state
        write_lock(root, lock.with_state(project.profile, state))
        lock = lock.with_state(project.profile, state)
        emit(
            ImageBuilt(
                name,
                result.manifest.digest,
                "built",
                result.size,
                len(result.layers),
                st.reasons,
                time.monotonic() - started,
            )
        )
    return BuildResult(tuple(built), states)


@dataclass(frozen=True)
class ImageComparison:
    """A recorded image rebuilt: its digest then and now, and the layers that differ
    (named by the history's ``created_by``; empty when the digests are equal)."""

    name: str
    recorded: Digest
    rebuilt: Digest
    layers: tuple[str, ...] = ()

    @property
    def same(self) -> bool:
        return self.recorded == self.rebuilt

    @property
    def verdict(self) -> str:
        return "identical" if self.same else "differs"


def compare_images(
    root: Path,
    *,
    profile: str | None,
    names: Sequence[str] = (),
    emit: Emit,
    layout: ImageLayout | None = None,
) -> list[ImageComparison]:
    """Rebuild each recorded image from its commit in a scratch layout; compare digests.

    A base is rebuilt from the commit its record names; a model from the outputs the
    lock records (read verified from the object store, not the workspace, which may
    have moved on) and the base rebuilt just before it. ``layout`` holds the recorded
    images (pinned ``from:`` bases are copied from it; default: ``root``'s)."""
    project = load_project_memoised(root, profile=profile)
    selected = _select(project, names)
    state = read_lock(root).state(project.profile)
    layout = layout or layout_of(root)
    compared: list[ImageComparison] = []
    scratch_dir = Path(tempfile.mkdtemp(prefix=CHECK_PREFIX, dir=root / ".canon"))
    try:
        scratch = ImageLayout(scratch_dir)
        builder = ImageBuilder(
            root, project, scratch, state, _copy_from(layout, scratch), _recorded_file(root, state)
        )
        rebuilt: dict[str, Built] = {}
        for name in selected:
            spec = project.artifacts[name]
            record = state.images.get(name)
            if record is None:
                raise ImageError(
                    f"image {name} is not recorded in canon.lock",
                    hint=f"build it first: `canon build {name}`",
                )
            if spec.kind is ArtifactKind.BASE:
                result = builder.build_base(spec, resolve_commit(root, record.commit))
            else:
                result = builder.build_model(spec, rebuilt[spec.base or ""])
            rebuilt[name] = result
            same = result.manifest.digest == record.digest
            layers = () if same else _differing_layers(layout, record.digest, scratch, result)
            compared.append(ImageComparison(name, record.digest, result.manifest.digest, layers))
            emit(
                ImageBuilt(
                    name,
                    result.manifest.digest,
                    "checked" if same else "differs",
                    result.size,
                    len(result.layers),
                    () if same else (f"canon.lock pins {record.digest}", *layers),
                )
            )
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)
    return compared


def check_images(
    root: Path, *, profile: str | None, names: Sequence[str] = (), emit: Emit
) -> list[str]:
    """``compare_images``, raising ``ImageCheckError`` if any differs."""
    compared = compare_images(root, profile=profile, names=names, emit=emit)
    differs = [c.name for c in compared if not c.same]
    if differs:
        raise ImageCheckError(
            f"rebuilding gave different digests for: {', '.join(differs)}",
            hint="an input changed since the image was recorded (run `canon build`), "
            "or the build is not reproducible (compare the layers with `canon images`)",
        )
    return differs


def _differing_layers(
    recorded: ImageLayout, digest: Digest, scratch: ImageLayout, built: Built
) -> tuple[str, ...]:
    """The rebuilt image's layers that are not the recorded image's, by position, each
    named by what made it; or why they cannot be compared."""
    if not recorded.has_blob(digest):
        return (f"the recorded image is not in {IMAGES_DIR}: only its digest is compared",)
    try:
        old = oci.parse_manifest(recorded.read_bytes(digest))
        new = oci.parse_manifest(scratch.read_bytes(built.manifest.digest))
        config = oci.load_document(
            scratch.read_bytes(new.config.digest, new.config.size), "image config"
        )
    except CanonError as exc:
        return (f"cannot compare the layers: {exc.message}",)
    made = [
        str(h.get("created_by", "?"))
        for h in config.get("history", [])
        if isinstance(h, dict) and not h.get("empty_layer")
    ]
    out: list[str] = []
    for i, layer in enumerate(built.layers):
        before = old.layers[i].digest if i < len(old.layers) else None
        if layer.digest != before:
            what = made[i] if i < len(made) else f"layer {i + 1}"
            out.append(f"layer {i + 1} differs ({what[:80]})")
    if len(old.layers) > len(built.layers):
        out.append(f"the recorded image has {len(old.layers) - len(built.layers)} more layer(s)")
    if not out:
        out.append("same layers; the config differs (labels, env, entrypoint or dates)")
    return tuple(out)


def _recorded_file(root: Path, state: ProfileState) -> ReadFile:
    """A model's added file as the lock records it: a stage output from the object store
    (verified); a file no stage writes (committed with the code), from the workspace."""
    outs = {path: c for r in state.stages.values() for path, c in r.outs.items()}
    store = ObjectStore(root / ".canon" / "cache")

    def read(path: str) -> bytes:
        content = outs.get(path)
        if content is None:
            return (root / path).read_bytes()
        if content.is_dir:
            raise ImageError(f"{path} is a directory output; a model image adds files")
        try:
            return store.read_verified(content.digest)
        except StateError as exc:
            raise ImageError(
                f"cannot check: {path} as canon.lock records it ({content.digest}) is not "
                f"readable from the cache: {exc.message}",
                hint="`canon pull` restores it from the remote; `canon apply` re-creates it",
            ) from exc

    return read


def _copy_from(source: ImageLayout, target: ImageLayout) -> FetchBase:
    """A base-image fetcher for checks: the pinned base, copied verified from ``source``."""

    def fetch(reference: str, platform: str) -> oci.Descriptor:
        digest = Digest(reference.rsplit("@", 1)[1])
        data = source.read_bytes(digest)
        manifest = oci.parse_manifest(data)
        for blob in (manifest.config, *manifest.layers):
            source.verify(blob.digest, blob.size)
            with target.writer() as w, open(source.blob_path(blob.digest), "rb") as f:
                while chunk := f.read(1 << 20):
                    w.write(chunk)
                w.commit(blob.digest, blob.size)
        target.put_bytes(data, digest)
        return oci.Descriptor(oci.MANIFEST, digest, len(data))

    return fetch


def _fetcher(root: Path, given: FetchBase | None) -> FetchBase:
    if given is not None:
        return given

    def fetch(reference: str, platform: str) -> oci.Descriptor:
        # imported here: httpx costs ~0.1 s, and a no-change build never needs it
        from canon.apply.registries import fetch_base_image

        return fetch_base_image(root, reference, platform)

    return fetch


def recorded(root: Path, profile: str | None) -> tuple[Project, ProfileState, Lock]:
    project = load_project_memoised(root, profile=profile)
    lock = read_lock(root)
    return project, lock.state(project.profile), lock


def with_pushed(state: ProfileState, name: str, repository: str, tag: str) -> ProfileState:
    record = state.images[name]
    return state.with_image(name, replace(record, pushed={**record.pushed, repository: tag}))


def describe_images(root: Path, *, profile: str | None) -> list[dict[str, Any]]:
    """Each recorded image with its layers (size, history line, shared with its base)."""
    project, state, _ = recorded(root, profile)
    layout = layout_of(root)
    out: list[dict[str, Any]] = []
    for name, record in state.images.items():
        spec = project.artifacts.get(name)
        layers: list[dict[str, object]] = []
        stored = layout.has_blob(record.digest)
        if stored:
            manifest = oci.parse_manifest(layout.read_bytes(record.digest))
            config = oci.load_document(
                layout.read_bytes(manifest.config.digest, manifest.config.size), "config"
            )
            history = [h for h in config.get("history", []) if not h.get("empty_layer")]
            base_layers: set[str] = set()
            if record.base is not None and layout.has_blob(record.base):
                base_manifest = oci.parse_manifest(layout.read_bytes(record.base))
                base_layers = {b.digest for b in base_manifest.layers}
            for i, layer in enumerate(manifest.layers):
                layers.append(
                    {
                        "digest": layer.digest,
                        "size": layer.size,
                        "created_by": str(history[i].get("created_by", ""))
                        if i < len(history)
                        else "",
                        "shared": layer.digest in base_layers,
                    }
                )
        out.append(
            {
                "name": name,
                "kind": spec.kind.value if spec is not None else "?",
                "digest": record.digest,
                "size": record.size,
                "commit": record.commit,
                "base": record.base,
                "stored": stored,
                "layers": layers,
                "pushed": dict(record.pushed),
            }
        )
    return out
