"""Moving images between ``.canon/images`` and OCI registries.

- ``push_image``: blobs first (skipping those the registry has), then the
  manifest under a tag; the pushed reference is recorded in canon.lock.
- ``pull_image``: manifest, config and layers, each verified, into the
  layout. When the reference is a *tag* of an image canon.lock pins, and the
  tag now points elsewhere, that is reported and the pinned digest is pulled:
  the pin wins (RELIABILITY.md, "a tag that now points to a different digest").
- ``fetch_base_image``: the pinned ``from:`` of a base artifact, platform chosen
  from an index, cached in the layout.

The registry comes from ``--registry``, else the profile's ``registry:`` value
(``host[:port]/namespace``; ``oci-layout:DIR`` means the local layout only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from canon.apply.images import layout_of, recorded, with_pushed
from canon.digest import Digest
from canon.errors import ImageError, RegistryError
from canon.events import Emit, ImagePushed, Notice
from canon.stores.lockfile import read_lock, write_lock
from canon.stores.oci import spec as oci
from canon.stores.oci.layout import ImageLayout
from canon.stores.oci.registry import Reference, RegistryClient

LOCAL_PREFIX = "oci-layout:"


@dataclass(frozen=True)
class PushResult:
    reference: str
    uploaded: int
    skipped: int
    bytes_uploaded: int


def registry_for(profile_values: dict[str, object], given: str | None) -> str:
    value = given or profile_values.get("registry")
    if not isinstance(value, str) or not value or value.startswith(LOCAL_PREFIX):
        raise ImageError(
            "no registry to push to",
            hint="give --registry HOST[:PORT]/NAMESPACE, or set registry: in the profile",
        )
    return value.rstrip("/").removeprefix("https://").removeprefix("http://")


def push_image(
    root: Path,
    *,
    profile: str | None,
    name: str,
    registry: str | None,
    emit: Emit,
    chunk: int | None = None,
) -> PushResult:
    project, state, lock = recorded(root, profile)
    record = state.images.get(name)
    if record is None:
        raise ImageError(
            f"image {name} is not built (not in canon.lock)", hint=f"run `canon build {name}`"
        )
    target = registry_for(dict(project.profile_values), registry)
    ref = Reference.parse(f"{target}/{name}:{record.commit[:12]}")
    layout = layout_of(root)
    manifest_bytes = layout.read_bytes(record.digest)
    manifest = oci.parse_manifest(manifest_bytes)
    uploaded = skipped = 0
    spec = project.artifacts.get(name)
    base_repo = None
    if spec is not None and spec.base is not None:
        base_repo = Reference.parse(f"{target}/{spec.base}").repository
    base_layers: set[str] = set()
    if record.base is not None and layout.has_blob(record.base):
        base_layers = {b.digest for b in oci.parse_manifest(layout.read_bytes(record.base)).layers}
    with RegistryClient(ref.host) as client:
        for blob in (*manifest.layers, manifest.config):
            layout.verify(blob.digest, blob.size)
            path = layout.blob_path(blob.digest)
            sizes = {} if chunk is None else {"chunk": chunk, "monolithic_max": chunk}
            mount = base_repo if blob.digest in base_layers else None
            sent = client.push_blob(ref.repository, blob, path.open, mount_from=mount, **sizes)
            uploaded, skipped = uploaded + sent, skipped + (not sent)
        client.put_manifest(ref.repository, ref.tag or "latest", manifest_bytes, oci.MANIFEST)
        sent_bytes = client.bytes_uploaded
    shown = f"{ref.registry}/{ref.repository}:{ref.tag}@{record.digest}"
    lock = read_lock(root)
    state = lock.state(project.profile)
    if name in state.images and state.images[name].digest == record.digest:
        write_lock(
            root,
            lock.with_state(
                project.profile,
                with_pushed(state, name, f"{ref.registry}/{ref.repository}", ref.tag or ""),
            ),
        )
    emit(ImagePushed(name, shown, uploaded, skipped, sent_bytes))
    return PushResult(shown, uploaded, skipped, sent_bytes)


def _pull_manifest(
    client: RegistryClient, ref: Reference, reference: str, layout: ImageLayout, platform: str
) -> oci.Descriptor:
    data, media_type, digest = client.get_manifest(ref.repository, reference)
    if media_type in oci.INDEX_TYPES:
        want_os, _, want_arch = platform.partition("/")
        for entry in oci.parse_index(data, f"index {ref}"):
            p = entry.platform or {}
            if p.get("os") == want_os and p.get("architecture") == want_arch:
                layout.put_bytes(data, digest)
                return _pull_manifest(client, ref, entry.digest, layout, platform)
        raise ImageError(f"{ref} has no image for {platform}")
    manifest = oci.parse_manifest(data, f"manifest {ref}")
    for blob in (manifest.config, *manifest.layers):
        client.pull_blob(ref.repository, blob, layout)
    layout.put_bytes(data, digest)
    return oci.Descriptor(
        media_type if media_type in oci.MANIFEST_TYPES else oci.MANIFEST, digest, len(data)
    )


def fetch_base_image(root: Path, reference: str, platform: str) -> oci.Descriptor:
    """The pinned base image, from the layout when stored (verified), else the registry."""
    ref = Reference.parse(reference)
    if ref.digest is None:
        raise ImageError(f"base image {reference} is not pinned by digest")
    layout = layout_of(root)
    if layout.has_blob(ref.digest):
        data = layout.read_bytes(ref.digest)
        if oci.media_type_of(data) in oci.MANIFEST_TYPES:
            manifest = oci.parse_manifest(data)
            if all(layout.has_blob(b.digest, b.size) for b in (manifest.config, *manifest.layers)):
                return oci.Descriptor(oci.MANIFEST, ref.digest, len(data))
    with RegistryClient(ref.host) as client:
        return _pull_manifest(client, ref, ref.digest, layout, platform)


def pull_image(
    root: Path, *, profile: str | None, reference: str, emit: Emit, platform: str = "linux/amd64"
) -> oci.Descriptor:
    """Pull ``reference`` into the layout and tag it there; the lock's pin wins over a tag."""
    ref = Reference.parse(reference)
    layout = layout_of(root)
    wanted: Digest | None = ref.digest
    tag_name = ref.repository.rsplit("/", 1)[-1]
    pinned = None
    try:
        _, state, _ = recorded(root, profile)
        record = state.images.get(tag_name)
        pinned = record.digest if record is not None else None
    except ImageError:
        pass
    from canon.stores.repolock import RepoLock

    # under the apply lock: `canon gc` never sees blobs written but not yet tagged
    with (
        RepoLock(root / ".canon" / "apply.lock") as repo_lock,
        RegistryClient(ref.host) as client,
    ):
        repo_lock.acquire(["canon", "pull-image", reference], wait=30.0)
        if wanted is None:
            current = client.resolve(ref.repository, ref.tag or "latest")
            if current is None:
                raise RegistryError(f"{reference}: no such tag")
            if pinned is not None and current != pinned:
                emit(
                    Notice(
                        f"{reference} points to {current}, but canon.lock pins {pinned} "
                        f"for {tag_name}: pulling the pinned image"
                    )
                )
                wanted = pinned
            else:
                wanted = current
        descriptor = _pull_manifest(client, ref, wanted, layout, platform)
        layout.tag(tag_name, descriptor)
    return descriptor
