"""canon's model server as baked into every base image: what it is made of, and its identity.

The model image's entrypoint is ``canon serve`` (issue 5), so a base image carries a
*runtime* layer: canon's own package files, as installed here, plus the wheels of exactly
what ``canon serve --image-root`` imports (measured with ``python -X importtime``: click,
uvicorn and h11, starlette and anyio, idna, typing_extensions — no pydantic, no rich, no
PyYAML), at the versions installed beside canon (``make install`` pins them to
constraints.txt). Its *identity* is a digest over every package file's path and digest
and those pins: a base image's key includes it, so upgrading canon (or editing it, in a
development checkout) makes bases stale, as it changes their bytes.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import canon
from canon.digest import Digest, hash_bytes, hash_file
from canon.stores.oci.spec import canonical_json

# What `canon serve` imports beyond the standard library (closed under dependencies).
PACKAGES = ("anyio", "click", "h11", "idna", "starlette", "typing_extensions", "uvicorn")
MISSING = "missing"  # the version recorded for a package that is not installed here


@dataclass(frozen=True)
class Runtime:
    package: Path  # canon's package directory
    files: tuple[str, ...]  # relative POSIX paths under it, sorted, no bytecode
    pins: tuple[tuple[str, str], ...]  # (distribution, version)
    identity: Digest

    @property
    def requirements(self) -> bytes:
        return "".join(f"{name}=={version}\n" for name, version in self.pins).encode()

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(name for name, version in self.pins if version == MISSING)


def package_files(package: Path) -> tuple[str, ...]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(package):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel_dir = os.path.relpath(dirpath, package)
        for name in filenames:
            if name.endswith((".pyc", ".pyo")) or os.path.islink(os.path.join(dirpath, name)):
                continue
            found.append(name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/"))
    return tuple(sorted(found))


def _version(name: str) -> str:
    """The installed version of distribution ``name``: read from the name of its
    ``.dist-info`` folder beside the module (one listing; importing
    ``importlib.metadata`` alone costs ~30 ms on every status of a project with
    images), else asked of ``importlib.metadata``."""
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.origin:
        origin = Path(spec.origin)
        site = origin.parent.parent if origin.name == "__init__.py" else origin.parent
        prefix = name.replace("-", "_").lower() + "-"
        with contextlib.suppress(OSError):
            for entry in os.scandir(site):
                low = entry.name.lower()
                if low.startswith(prefix) and low.endswith(".dist-info"):
                    return entry.name[len(prefix) : -len(".dist-info")]
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return MISSING


@functools.cache
def runtime() -> Runtime:
    """This installation's runtime (computed once per process: ~180 small files)."""
    package = Path(canon.__file__).resolve().parent
    files = package_files(package)
    pins = tuple((name, _version(name)) for name in PACKAGES)
    identity = hash_bytes(
        canonical_json(
            {
                "files": {rel: hash_file(package / rel) for rel in files},
                "pins": dict(pins),
            }
        )
    )
    return Runtime(package, files, pins, identity)
