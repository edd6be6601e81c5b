"""What a model server runs: the code, the model files and the provenance that names them.

Two sources give the same ``Bundle``:

- an extracted model image (``--image-root DIR``): ``DIR/canon/provenance.json`` says which
  files the image carries and their digests; the repo is ``DIR/canon/repo``; the module path
  comes from the image config's ``PYTHONPATH`` (rewritten under DIR) or the repo's ``src``;
- the workspace (``canon serve`` in a project): the provenance is computed from canon.lock
  and the files as they are now, exactly as ``canon build`` would write it.

``verify`` hashes every file the provenance names before anything is imported: a server
never runs a model that is not the one its provenance claims. Files that run code when
loaded (pickle, joblib, torch's zip-of-pickle) are refused unless the artifact declares
``serve.trust_pickle: true``, which the provenance records (issue 5, RELIABILITY.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canon.digest import hash_file
from canon.errors import ServeError

PROVENANCE = "canon/provenance.json"
REPO = "canon/repo"
RUNTIME = "/canon/runtime"  # executors.image.runtime.PREFIX

# Formats whose loaders execute code from the file (pickle opcodes).
PICKLE_SUFFIXES = frozenset(
    {".pkl", ".pickle", ".joblib", ".jbl", ".dill", ".pt", ".pth", ".sav", ".cloudpickle"}
)


@dataclass(frozen=True)
class Bundle:
    """A model ready to be loaded: ``handler`` imported from ``pythonpath``, the files of
    ``provenance["files"]`` found under ``repo``."""

    repo: Path
    handler: str
    provenance: Mapping[str, Any]
    pythonpath: tuple[Path, ...] = ()
    image_digest: str | None = None
    source: str = "image"
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def trust_pickle(self) -> bool:
        return bool(self.provenance.get("trust_pickle"))

    @property
    def files(self) -> dict[str, str]:
        files = self.provenance.get("files") or {}
        return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def from_image_root(root: Path, image_digest: str | None = None) -> Bundle:
    """The bundle of a model image extracted at ``root`` (see ``stores.oci.unpack``)."""
    path = root / PROVENANCE
    try:
        provenance = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise ServeError(
            f"{path} does not exist: {root} is not an extracted model image",
            hint="build one with `canon build` (an artifact with kind: model)",
        ) from exc
    except (OSError, ValueError) as exc:
        raise ServeError(f"cannot read {path}: {exc}") from exc
    if not isinstance(provenance, dict) or not isinstance(provenance.get("handler"), str):
        raise ServeError(
            f"{path} names no handler",
            hint="declare serve: {handler: package.module:function} on the model artifact",
        )
    config = _image_config(root)
    env = _image_env(config)
    # not /canon/runtime (canon's own server, in every base image): whoever serves the
    # image here already runs a canon; its copy in the image is for containers
    pythonpath = [
        root / entry.lstrip("/")
        for entry in env.get("PYTHONPATH", "").split(":")
        if entry.startswith("/") and entry.rstrip("/") != RUNTIME
    ]
    if not pythonpath:
        pythonpath = [root / REPO / "src", root / REPO]
    return Bundle(
        repo=root / REPO,
        handler=provenance["handler"],
        provenance=provenance,
        pythonpath=tuple(pythonpath),
        image_digest=image_digest,
        source="image",
        env={k: v for k, v in env.items() if k not in {"PATH", "PYTHONPATH"}},
    )


def _image_config(root: Path) -> Mapping[str, Any]:
    """The image config saved next to an extracted image (``canon/image-config.json`` one
    level above the rootfs, written by the local deploy target), or empty."""
    for candidate in (root.parent / "image-config.json", root / "canon" / "image-config.json"):
        try:
            data = json.loads(candidate.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return {}


def _image_env(config: Mapping[str, Any]) -> dict[str, str]:
    entries = (config.get("config") or {}).get("Env") or []
    return dict(e.split("=", 1) for e in entries if isinstance(e, str) and "=" in e)


def is_pickle(path: Path) -> bool:
    """By name, or by content: pickle protocol 2+ starts with PROTO (0x80) and a version."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def verify(bundle: Bundle) -> dict[str, str]:
    """Check every file the provenance names: present, the digest it claims, and not a
    pickle unless trusted. Returns {path: digest}; raises ServeError naming every problem."""
    problems: list[str] = []
    checked: dict[str, str] = {}
    for rel, claimed in sorted(bundle.files.items()):
        full = bundle.repo / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            problems.append(f"{rel}: path leaves the repo")
            continue
        try:
            actual = hash_file(full)
        except OSError as exc:
            problems.append(f"{rel}: cannot read ({exc.strerror or exc})")
            continue
        if actual != claimed:
            problems.append(f"{rel}: is {actual[:19]}…, provenance says {claimed[:19]}…")
            continue
        if is_pickle(full) and not bundle.trust_pickle:
            problems.append(f"{rel}: pickle/joblib files run code when loaded and are refused")
            continue
        checked[rel] = actual
    if problems:
        trust = any("pickle" in p for p in problems)
        raise ServeError(
            "the model's files do not match its provenance:\n  " + "\n  ".join(problems),
            hint="declare serve: {trust_pickle: true} on the model artifact if you trust them"
            if trust
            else "rebuild the image (`canon build`) from the recorded commit",
        )
    return checked
