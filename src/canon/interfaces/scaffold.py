"""``canon init``: write a new project, empty or from a bundled example.

Templates live in the ``canon.examples`` package, one directory per example. A template
file named ``gitignore`` is written as ``.gitignore`` (dot-files do not travel well as
package data) and is merged line by line into an existing one, never overwritten.
Examples may name data that ships inside another installed package (``_EXAMPLE_DATA``);
it is copied into the project and checked against its pinned sha256.

Nothing is written unless everything can be: conflicts are detected first, and every
file is written to a temp file and renamed into place.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from canon.errors import CanonError

__all__ = ["InitError", "available_examples", "init_project"]

CONFIG = "canon.yaml"
PARAMS = "params.yaml"
GITIGNORE = ".gitignore"
_TEMPLATE_RENAMES = {"gitignore": GITIGNORE}
_SKIPPED = {"__pycache__", ".DS_Store"}
_NAME_MAX = 100
_FILE_MODE = 0o644  # mkstemp makes 0o600 files; project files are ordinary ones


class InitError(CanonError):
    """``canon init`` cannot write the project (it exists, the example is unknown…)."""

    code = "init.refused"


@dataclass(frozen=True)
class _PackagedData:
    """A data file that ships inside an installed PyPI package."""

    package: str
    resource: str  # path inside the package
    target: str  # path in the project
    sha256: str
    install_hint: str


_EXAMPLE_DATA: dict[str, tuple[_PackagedData, ...]] = {
    "weather": (
        _PackagedData(
            package="vega_datasets",
            resource="_data/seattle-weather.csv",
            target="data/seattle-weather.csv",
            sha256="62f0609f787158128aa2bd102967173a4953122dd4f872bf1d502cae1037df0b",
            install_hint="pip install 'canon[example]'  (installs vega_datasets==0.9.0)",
        ),
    ),
}


def available_examples() -> list[str]:
    """The bundled examples' names, sorted."""
    root = files("canon.examples")
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and not entry.name.startswith(("_", "."))
    )


def init_project(root: Path, example: str | None = None, *, force: bool = False) -> list[str]:
    """Write a canon project into ``root`` and return the relative paths written, sorted.

    Without ``example``: a minimal ``canon.yaml`` named after the directory, an empty
    ``params.yaml`` and ``.canon/`` in ``.gitignore``. With ``example``: that bundled
    example's files and data. Refuses to overwrite existing files unless ``force``;
    ``.gitignore`` is always merged. Runs ``git init`` when ``root`` is not in a Git work
    tree (skipped when git is not installed).
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InitError(f"{root} exists and is not a directory")

    planned: dict[str, bytes] = {}
    ignore_lines: list[str] = []
    if example is None:
        planned[CONFIG] = _minimal_config(_project_name(root)).encode()
        planned[PARAMS] = _MINIMAL_PARAMS.encode()
        ignore_lines = [".canon/"]
    else:
        for rel, content in _template_files(example):
            if rel == GITIGNORE:
                ignore_lines = content.decode().splitlines()
            else:
                planned[rel] = content
        for data in _EXAMPLE_DATA.get(example, ()):
            planned[data.target] = _packaged_data(data)

    blocked = sorted(rel for rel in planned if (root / rel).is_dir())
    if blocked:
        raise InitError(
            f"{root} has a directory where canon init would write a file: {_describe(blocked)}",
            hint="move it away, then rerun canon init",
        )
    conflicts = sorted(
        rel
        for rel, content in planned.items()
        if _differs(root / rel, content) or (rel == CONFIG and (root / rel).exists())
    )
    if conflicts and not force:
        raise InitError(
            f"{root} already has {_describe(conflicts)}",
            hint="use --force to overwrite them, or init into an empty directory",
        )

    written: list[str] = []
    try:
        root.mkdir(parents=True, exist_ok=True)
        for rel, content in planned.items():
            target = root / rel
            if not target.exists() or _differs(target, content):
                _write_atomic(root / rel, content)
                written.append(rel)
        if _merge_gitignore(root / GITIGNORE, ignore_lines):
            written.append(GITIGNORE)
    except OSError as exc:
        raise InitError(f"cannot write the project in {root}: {exc}") from exc
    _git_init(root)
    return sorted(written)


# -- the minimal project ----------------------------------------------------------------

_MINIMAL_PARAMS = """\
# Hyperparameters, plain text. Stages name the keys they use in canon.yaml
# (params: [train.lr]) and read them as ${params.train.lr}. For example:
# train:
#   lr: 0.1
"""


def _minimal_config(name: str) -> str:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"""\
# canon.yaml: the declared state of this project. `canon schema` prints every field.
project: {name}

environment:
  python: "{python}"
  # requirements: requirements.lock   # pinned dependencies; part of every stage's key

# data:
#   raw:
#     source: ${{profile.data_root}}/raw.csv

params: {PARAMS}

# A stage is a command with what it reads, the params it uses and what it writes:
#
#   train:
#     cmd: python -m {_module_name(name)}.train --data ${{data.raw}} --lr ${{params.train.lr}}
#     env: {{PYTHONPATH: src}}
#     deps: [src/{_module_name(name)}/train.py, data.raw]
#     params: [train.lr]
#     outs: [build/model.json]
#     metrics: [build/metrics.json]
stages: {{}}

default_profile: local
profiles:
  local: {{data_root: data}}
"""


def _project_name(root: Path) -> str:
    """The directory's name made a valid project name: ``^[A-Za-z_][A-Za-z0-9_-]*$``."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", root.resolve().name).strip("-")
    if not name:
        return "project"
    if not (name[0].isascii() and (name[0].isalpha() or name[0] == "_")):
        name = "_" + name
    return name[:_NAME_MAX]


def _module_name(name: str) -> str:
    return name.replace("-", "_").lower()


# -- examples ---------------------------------------------------------------------------


def _template_files(example: str) -> list[tuple[str, bytes]]:
    available = available_examples()
    if example not in available:
        raise InitError(
            f"unknown example {example!r}",
            hint=f"available examples: {', '.join(available) or '(none)'}",
        )
    out: list[tuple[str, bytes]] = []
    _walk(files("canon.examples").joinpath(example), "", out)
    return sorted(out)


def _walk(node: Traversable, prefix: str, out: list[tuple[str, bytes]]) -> None:
    for entry in node.iterdir():
        name = entry.name
        if name in _SKIPPED or name.endswith((".pyc", ".pyo")):
            continue
        if entry.is_dir():
            _walk(entry, f"{prefix}{name}/", out)
        else:
            out.append((prefix + _TEMPLATE_RENAMES.get(name, name), entry.read_bytes()))


def _packaged_data(data: _PackagedData) -> bytes:
    spec = importlib.util.find_spec(data.package)
    if spec is None or not spec.submodule_search_locations:
        raise InitError(
            f"the example's data comes from the {data.package} package, which is not installed",
            hint=data.install_hint,
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / data.resource
        if candidate.is_file():
            content = candidate.read_bytes()
            break
    else:
        raise InitError(
            f"{data.package} is installed but has no {data.resource}", hint=data.install_hint
        )
    digest = hashlib.sha256(content).hexdigest()
    if digest != data.sha256:
        raise InitError(
            f"{data.package}'s {data.resource} is not the expected file "
            f"(sha256 {digest[:12]}…, expected {data.sha256[:12]}…)",
            hint=data.install_hint,
        )
    return content


# -- writing ----------------------------------------------------------------------------


def _differs(path: Path, content: bytes) -> bool:
    """Whether writing ``content`` to ``path`` would change or replace something."""
    if not path.exists() and not path.is_symlink():
        return False
    return path.is_symlink() or path.read_bytes() != content


def _describe(paths: list[str]) -> str:
    shown = ", ".join(paths[:5])
    more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
    return f"{shown}{more}"


def _write_atomic(path: Path, content: bytes) -> None:
    """Write through a temp file and a rename; a symlink at ``path`` is replaced, not followed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), _FILE_MODE)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _merge_gitignore(path: Path, lines: list[str]) -> bool:
    """Append the lines ``path`` lacks (comments and blanks kept only when creating it)."""
    if not lines:
        return False
    if not path.exists():
        _write_atomic(path, ("\n".join(lines) + "\n").encode())
        return True
    text = path.read_text(encoding="utf-8")
    present = {line.strip() for line in text.splitlines()}
    missing = [
        line for line in lines if line.strip() and not line.startswith("#") and line not in present
    ]
    if not missing:
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    _write_atomic(path, (text + "\n".join(missing) + "\n").encode())
    return True


def _git_init(root: Path) -> None:
    """``git init`` unless ``root`` is already inside a work tree or git is missing."""
    git = shutil.which("git")
    if git is None:
        return
    inside = subprocess.run(
        [git, "rev-parse", "--is-inside-work-tree"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if inside.returncode == 0 and inside.stdout.strip() == "true":
        return
    done = subprocess.run(
        [git, "init", "--quiet"], cwd=root, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise InitError(
            f"the project was written, but git init failed in {root}: "
            f"{done.stderr.strip() or done.returncode}",
            hint="run git init there yourself",
        )
