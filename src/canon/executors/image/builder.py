"""Build base and model images into an OCI layout, bit for bit reproducibly.

    base  = [layers of the pinned ``from:`` image] + environment layer + runtime layer
            (canon's model server, ``runtime.py``) + repo layer
    model = [every layer of the base, byte for byte] + ONE layer (the ``add:``
            files, /canon/provenance.json); its entrypoint is the base's
            /canon/serve.py: ``canon serve`` over HTTP

Every input of an image is named by its *key* (a digest over exactly what goes
into it), so "is the recorded image still right?" is answered without
building. A base's key covers the commit's tree minus ``canon.lock`` (recording
an image in the lock and committing it must not make the image stale), the
artifact's declaration, the base reference and canon's own runtime
(``observe.runtime``: the model server every base carries); the base's content (labels,
provenance, file times) comes from that commit. A model's key covers its
provenance document (base digest, the added files' digests, stage keys, data
digests, params) and its declaration.

Nothing here writes outside the layout; recording in canon.lock is apply's job.
"""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canon import __version__ as canon_version
from canon.declare.project import ArtifactKind, ArtifactSpec, Project
from canon.digest import Digest, hash_bytes
from canon.errors import ImageError
from canon.executors.image import environment, repo, runtime
from canon.executors.image.tarball import Entry, Layer, build_layer
from canon.observe import runtime as runtime_info
from canon.observe.images import (
    LOCK_FILE,
    Commit,
    base_key,
    key_of,
    model_key,
    model_provenance,
)
from canon.stores.oci import spec as oci
from canon.stores.oci.layout import ImageLayout
from canon.stores.records import ProfileState

REPO_DIR = "canon/repo"  # /canon/repo in the image: the working directory
PROVENANCE = "canon/provenance.json"
ENV_MTIME = 1  # the environment layer's file times: 1970-01-01T00:00:01Z, as Jib does
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

FetchBase = Callable[[str, str], oci.Descriptor]  # (reference, platform) -> manifest in layout
ReadFile = Callable[[str], bytes]  # a model's added file (repo-relative path) -> its bytes


@dataclass(frozen=True)
class Built:
    """An image in the layout."""

    name: str
    kind: ArtifactKind
    manifest: oci.Descriptor
    layers: tuple[oci.Descriptor, ...]
    key: Digest
    commit: str
    base: Digest | None  # the image it was built on (pinned from:, or the base artifact)
    notices: tuple[str, ...] = ()
    reused: bool = False

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)


def rfc3339(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class ImageBuilder:
    """Builds one project's artifacts into ``layout``."""

    def __init__(
        self,
        root: Path,
        project: Project,
        layout: ImageLayout,
        state: ProfileState,
        fetch_base: FetchBase | None = None,
        read_file: ReadFile | None = None,
    ) -> None:
        self.root = root
        self.project = project
        self.layout = layout
        self.state = state
        self.fetch_base = fetch_base
        self.read_file = read_file  # a model's added files; default: the workspace's
        self.cache = layout.root / "cache"

    # -- base ------------------------------------------------------------

    def build_base(self, spec: ArtifactSpec, commit: Commit) -> Built:
        created = rfc3339(commit.time)
        notices: list[str] = []
        config: dict[str, Any] = {}
        layers: list[oci.Descriptor] = []
        diff_ids: list[str] = []
        history: list[dict[str, Any]] = []
        base_digest: Digest | None = None
        if spec.base_image is not None:
            if self.fetch_base is None:
                raise ImageError(f"cannot fetch base image {spec.base_image}")
            base_manifest = self.fetch_base(spec.base_image, spec.platform)
            base_digest = base_manifest.digest
            manifest, config = self.read_image(base_manifest)
            layers = list(manifest.layers)
            diff_ids = oci.diff_ids(config)
            history = [h for h in config.get("history", []) if isinstance(h, dict)]
        env_layer = self._environment_layer(spec, commit)
        if env_layer is not None:
            layers.append(env_layer.descriptor)
            diff_ids.append(env_layer.diff_id)
            history.append(
                {
                    "created": created,
                    "created_by": f"canon: pip install -r {self.project.environment.requirements}"
                    f" ({spec.platform}, Python {self.project.environment.python})",
                }
            )
        python = self.project.environment.python or "3.11"
        runtime_layer = self._runtime_layer(spec, python)
        layers.append(runtime_layer.descriptor)
        diff_ids.append(runtime_layer.diff_id)
        history.append(
            {
                "created": created,
                "created_by": f"canon: the model server (canon {canon_version}, "
                f"{spec.platform}, Python {python})",
            }
        )
        files = repo.repo_files(self.root, commit, REPO_DIR, spec.exclude)
        if files.secrets:
            notices.append(
                f"image {spec.name}: left out {len(files.secrets)} file(s) that may hold "
                f"secrets: {', '.join(files.secrets[:5])}"
            )
        if files.skipped:
            notices.append(
                f"image {spec.name}: left out submodules and links leaving the repo: "
                f"{', '.join(files.skipped[:5])}"
            )
        lock_bytes = repo.file_at(self.root, commit.id, LOCK_FILE)
        provenance = {
            "artifact": spec.name,
            "kind": "base",
            "commit": commit.id,
            "created": created,
            "lock": None if lock_bytes is None else hash_bytes(lock_bytes),
            "platform": spec.platform,
            "base_image": None
            if spec.base_image is None
            else {"name": spec.base_image, "digest": base_digest},
            "environment": None if env_layer is None else env_layer.diff_id,
            "runtime": runtime_layer.diff_id,
        }
        entries = [*files.entries, Entry.data(PROVENANCE, _pretty(provenance))]
        repo_layer = build_layer(self.layout, entries, commit.time)
        layers.append(repo_layer.descriptor)
        diff_ids.append(repo_layer.diff_id)
        history.append({"created": created, "created_by": f"canon: the repo at {commit.id}"})
        env = self._env(config, spec)
        labels = self._labels(config, commit.id, created, base_digest, spec.base_image)
        entrypoint = list(spec.entrypoint) if spec.entrypoint is not None else None
        image_config = self._config(
            config, spec, created, env, labels, entrypoint, diff_ids, history
        )
        built = self._store(
            spec,
            image_config,
            layers,
            labels,
            key=base_key(self.root, self.project, spec, commit.id),
            commit=commit.id,
            base=base_digest,
        )
        return Built(**{**built.__dict__, "notices": tuple(notices)})

    def _environment_layer(self, spec: ArtifactSpec, commit: Commit) -> Layer | None:
        env = self.project.environment
        if env.requirements is None:
            return None
        requirements = repo.file_at(self.root, commit.id, env.requirements)
        if requirements is None:
            raise ImageError(
                f"{env.requirements} is not in commit {commit.id[:12]}",
                hint="commit the requirements lock: images are built from the commit",
            )
        python = env.python or "3.11"
        key = key_of({"env": hash_bytes(requirements), "platform": spec.platform, "python": python})
        name = f"env-{key[7:]}.json"
        cached = self._cached_layer(name)
        if cached is not None:
            return cached
        with environment.installed(requirements, spec.platform, python) as entries:
            # not the commit's time: this layer is cached by its key across commits, and
            # a fresh clone of a later commit must build the same bytes
            layer = build_layer(self.layout, entries, ENV_MTIME)
        return self._remember(name, layer)

    def _runtime_layer(self, spec: ArtifactSpec, python: str) -> Layer:
        rt = runtime_info.runtime()
        key = key_of({"runtime": rt.identity, "platform": spec.platform, "python": python})
        name = f"runtime-{key[7:]}.json"
        cached = self._cached_layer(name)
        if cached is not None:
            return cached
        layer = runtime.build_runtime_layer(self.layout, rt, spec.platform, python, ENV_MTIME)
        return self._remember(name, layer)

    def _remember(self, name: str, layer: Layer) -> Layer:
        self.cache.mkdir(parents=True, exist_ok=True)
        from canon.stores.atomic import atomic_write

        atomic_write(
            self.cache / name,
            oci.canonical_json({**layer.descriptor.to_json(), "diff_id": layer.diff_id}),
        )
        return layer

    def _cached_layer(self, name: str) -> Layer | None:
        try:
            raw = json.loads((self.cache / name).read_bytes())
            descriptor = oci.parse_descriptor(raw, "layer cache")
            diff_id = Digest(str(raw["diff_id"]))
        except (OSError, ValueError, KeyError, ImageError):
            return None
        if not self.layout.has_blob(descriptor.digest, descriptor.size):
            return None
        return Layer(descriptor, diff_id, 0, 0)

    # -- model -----------------------------------------------------------

    def build_model(self, spec: ArtifactSpec, base: Built) -> Built:
        read = self.read_file or (lambda p: (self.root / p).read_bytes())
        contents = {p: read(p) for p in spec.add} if self.read_file is not None else None
        provenance = model_provenance(
            self.root, spec, self.state, base.manifest.digest, base.commit, contents
        )
        manifest, config = self.read_image(base.manifest)
        created = str(config.get("created") or rfc3339(0))
        mtime = calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))
        entries = [
            Entry.data(f"{REPO_DIR}/{p}", contents[p] if contents is not None else read(p))
            for p in spec.add
        ]
        entries.append(Entry.data(PROVENANCE, _pretty(provenance)))
        layer = build_layer(self.layout, entries, mtime)
        layers = [*manifest.layers, layer.descriptor]
        diff_ids = [*oci.diff_ids(config), layer.diff_id]
        history = [h for h in config.get("history", []) if isinstance(h, dict)]
        history.append({"created": created, "created_by": f"canon: add {' '.join(spec.add)}"})
        env = self._env(config, spec)
        if spec.handler is not None:
            env["CANON_HANDLER"] = spec.handler
        labels = self._labels(config, base.commit, created, base.manifest.digest, spec.base)
        entrypoint = (
            list(spec.entrypoint)
            if spec.entrypoint is not None
            else list(runtime.ENTRYPOINT)
            if spec.handler is not None
            else None
        )
        image_config = self._config(
            config, spec, created, env, labels, entrypoint, diff_ids, history
        )
        if spec.handler is not None and spec.entrypoint is None:
            image_config["config"]["ExposedPorts"] = {f"{runtime.DEFAULT_PORT}/tcp": {}}
        return self._store(
            spec,
            image_config,
            layers,
            labels,
            key=model_key(spec, provenance),
            commit=base.commit,
            base=base.manifest.digest,
        )

    # -- shared ----------------------------------------------------------

    def read_image(self, manifest: oci.Descriptor) -> tuple[oci.Manifest, dict[str, Any]]:
        """A manifest and its config from the layout, both verified."""
        parsed = oci.parse_manifest(self.layout.read_bytes(manifest.digest, manifest.size))
        config = oci.load_document(
            self.layout.read_bytes(parsed.config.digest, parsed.config.size), "image config"
        )
        return parsed, config

    def _env(self, base_config: Mapping[str, Any], spec: ArtifactSpec) -> dict[str, str]:
        inherited = (base_config.get("config") or {}).get("Env") or []
        env = dict(e.split("=", 1) for e in inherited if isinstance(e, str) and "=" in e)
        if spec.kind is ArtifactKind.BASE:
            path = env.get("PATH", BASE_PATH)
            env["PATH"] = f"/{environment.ENV_PREFIX}/bin:{path}"
            extra = [f"/{REPO_DIR}/{p}" for p in spec.pythonpath]
            # the runtime last: in the experimentation image the project's packages win
            # (the model server's launcher puts it first for itself)
            env["PYTHONPATH"] = ":".join(
                [f"/{environment.ENV_PREFIX}", *extra, f"/{runtime.PREFIX}"]
            )
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(dict(spec.env))
        return env

    def _labels(
        self,
        base_config: Mapping[str, Any],
        commit: str,
        created: str,
        base_digest: Digest | None,
        base_name: str | None,
    ) -> dict[str, str]:
        labels = dict((base_config.get("config") or {}).get("Labels") or {})
        labels.update({oci.REVISION: commit, oci.CREATED: created})
        source = repo.origin_url(self.root)
        if source:
            labels[oci.SOURCE] = source
        if base_digest is not None:
            labels[oci.BASE_DIGEST] = base_digest
            labels[oci.BASE_NAME] = base_name or ""
        return labels

    def _config(
        self,
        base_config: Mapping[str, Any],
        spec: ArtifactSpec,
        created: str,
        env: Mapping[str, str],
        labels: Mapping[str, str],
        entrypoint: list[str] | None,
        diff_ids: list[str],
        history: list[dict[str, Any]],
    ) -> dict[str, Any]:
        os_name, _, arch = spec.platform.partition("/")
        inner = dict(base_config.get("config") or {})
        inner.update(
            {
                "Env": [f"{k}={v}" for k, v in sorted(env.items())],
                "Labels": dict(sorted(labels.items())),
                "WorkingDir": f"/{REPO_DIR}",
            }
        )
        if entrypoint is not None:
            inner["Entrypoint"] = entrypoint
            inner.pop("Cmd", None)
        config: dict[str, Any] = {
            "created": created,
            "architecture": arch,
            "os": os_name,
            "config": inner,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
        if arch == "arm64":
            config["variant"] = "v8"
        return config

    def _store(
        self,
        spec: ArtifactSpec,
        config: dict[str, Any],
        layers: list[oci.Descriptor],
        labels: Mapping[str, str],
        *,
        key: Digest,
        commit: str,
        base: Digest | None,
    ) -> Built:
        config_bytes = oci.canonical_json(config)
        config_desc = oci.Descriptor.of(oci.CONFIG, config_bytes)
        self.layout.put_descriptor_bytes(config_desc, config_bytes)
        annotations = {
            k: v
            for k, v in labels.items()
            if k in (oci.REVISION, oci.CREATED, oci.SOURCE, oci.BASE_DIGEST, oci.BASE_NAME)
        }
        annotations[oci.TITLE] = spec.name
        manifest = oci.Manifest(config_desc, tuple(layers), annotations)
        manifest_bytes = manifest.to_bytes()
        manifest_desc = oci.Descriptor.of(oci.MANIFEST, manifest_bytes)
        self.layout.put_descriptor_bytes(manifest_desc, manifest_bytes)
        self.layout.tag(spec.name, manifest_desc)
        return Built(spec.name, spec.kind, manifest_desc, tuple(layers), key, commit, base)


def _pretty(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"
