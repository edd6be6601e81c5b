"""``canon init``: write a new project, empty or from a bundled example.

Templates live in the ``canon.examples`` package, one directory per example. A template
file named ``gitignore`` is written as ``.gitignore`` (dot-files do not travel well as
package data) and is merged line by line into an existing one, never overwritten.
Examples may name data that ships inside another installed package (``_EXAMPLE_DATA``);
it is copied into the project and checked against its pinned sha256.

Nothing is written unless everything can be: conflicts are detected first, and every
file is written to a temp file and renamed into place.

Git: ``canon init`` runs ``git init`` when the directory is not in a work tree, or is
in one that ignores it (``make demo`` writes ``demo/``, which canon's own repository
ignores), as ``cargo new`` does. It then commits the files it wrote, and only those,
when the repository has no commit yet (it just made it, or the user ran ``git init``):
canon builds images from a commit (``org.opencontainers.image.revision``), so a fresh
example must have one for its first ``canon apply`` to build its images. In a
repository that already has commits it stages and commits nothing (that history is
the user's), and the CLI prints the command that commits the files. When git knows no
identity, the first commit is authored ``canon init <canon-init@localhost>`` and the
result says so.
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

__all__ = ["GitOutcome", "InitError", "InitResult", "available_examples", "init_project"]

CONFIG = "canon.yaml"
PARAMS = "params.yaml"
GITIGNORE = ".gitignore"
_TEMPLATE_RENAMES = {"gitignore": GITIGNORE}
_SKIPPED = {"__pycache__", ".DS_Store"}
_NAME_MAX = 100
_FILE_MODE = 0o644  # mkstemp makes 0o600 files; project files are ordinary ones
# The author of the first commit when git knows no identity (a fresh CI machine).
FALLBACK_NAME = "canon init"
FALLBACK_EMAIL = "canon-init@localhost"


class InitError(CanonError):
    """``canon init`` cannot write the project (it exists, the example is unknown…)."""

    code = "init.refused"


@dataclass(frozen=True)
class GitOutcome:
    """What ``canon init`` did with Git.

    ``created``: it ran ``git init``. ``commit``: the commit it made (None when the
    repository already had commits, or git is missing). ``message``: the commit's
    subject (or the one to use). ``fallback_author``: git knew no identity, so the
    commit is authored ``FALLBACK_NAME <FALLBACK_EMAIL>``.
    """

    available: bool
    created: bool = False
    commit: str | None = None
    message: str | None = None
    fallback_author: bool = False


@dataclass(frozen=True)
class InitResult:
    """The relative paths written (sorted), whether ``root`` was new or empty before
    (then committing it whole commits only what init wrote), and the Git outcome."""

    written: list[str]
    root_was_empty: bool
    git: GitOutcome


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


def init_project(root: Path, example: str | None = None, *, force: bool = False) -> InitResult:
    """Write a canon project into ``root``; say what was written and what Git did.

    Without ``example``: a minimal ``canon.yaml`` named after the directory, an empty
    ``params.yaml`` and ``.canon/`` in ``.gitignore``. With ``example``: that bundled
    example's files and data. Refuses to overwrite existing files unless ``force``;
    ``.gitignore`` is always merged. Then Git, as the module docstring says (skipped
    when git is not installed).
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
    root_was_empty = not root.exists() or not any(root.iterdir())
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
    written.sort()
    message = f"canon init --example {example}" if example else "canon init"
    return InitResult(written, root_was_empty, _git_first_commit(root, written, message))


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


def _git_first_commit(root: Path, written: list[str], subject: str) -> GitOutcome:
    """``git init`` when needed; commit ``written`` when the repository has no commit."""
    git = shutil.which("git")
    if git is None:
        return GitOutcome(available=False)
    created = not _tracked_by_a_work_tree(git, root)
    if created:
        _git(git, root, "init", "--quiet", action="git init")
    has_commit = _git(git, root, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    if has_commit.returncode == 0 or not written:
        return GitOutcome(available=True, created=created, message=subject)
    env, fallback = _identity(git, root)
    message = (
        f"{subject}\n\nWritten by `{subject}`. canon builds images from commits "
        "(their provenance names the commit), so the project starts with one."
    )
    _git(git, root, "add", "--", *written, action="git add")
    _git(
        git, root, "commit", "--quiet", "-m", message, "--", *written, env=env, action="git commit"
    )
    head = _git(git, root, "rev-parse", "HEAD", action="git rev-parse").stdout.strip()
    return GitOutcome(True, created, head, subject, fallback)


def _tracked_by_a_work_tree(git: str, root: Path) -> bool:
    """Whether ``root`` is in a work tree that tracks it: not in one, or in one whose
    ``.gitignore`` ignores it (as ``cargo new`` decides), means a repository of its own."""
    top = _git(git, root, "rev-parse", "--show-toplevel", check=False)
    if top.returncode != 0 or not top.stdout.strip():
        return False
    toplevel = Path(top.stdout.strip())
    if toplevel.resolve() == root.resolve():
        return True
    rel = os.path.relpath(root.resolve(), toplevel.resolve())
    ignored = _git(git, toplevel, "check-ignore", "--quiet", "--", rel, check=False)
    return ignored.returncode != 0


def _identity(git: str, root: Path) -> tuple[dict[str, str] | None, bool]:
    """The environment for the commit: the user's identity when git knows one, else
    ``FALLBACK_NAME``'s (a first commit must not fail on a fresh CI machine)."""
    for var in ("GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT"):
        if _git(git, root, "var", var, check=False).returncode != 0:
            break
    else:
        return None, False
    fallback = {
        "GIT_AUTHOR_NAME": FALLBACK_NAME,
        "GIT_AUTHOR_EMAIL": FALLBACK_EMAIL,
        "GIT_COMMITTER_NAME": FALLBACK_NAME,
        "GIT_COMMITTER_EMAIL": FALLBACK_EMAIL,
    }
    return {**os.environ, **fallback}, True


def _git(
    git: str,
    root: Path,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    action: str = "git",
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [git, *args], cwd=root, capture_output=True, text=True, check=False, env=env
    )
    if check and done.returncode != 0:
        raise InitError(
            f"the project was written, but {action} failed in {root}: "
            f"{done.stderr.strip() or done.returncode}",
            hint="finish it yourself: git init (if needed), git add, git commit",
        )
    return done
