"""The environment a past commit's stages run in: its declared one rebuilt, or this one.

``canon reproduce`` (by default) and ``canon backtest --env rebuild`` run an
earlier commit's stages in the environment that commit declares
(``environment: {python, requirements}``): a venv of its Python with its
requirements lock installed (``executors/venv.py``, kept by the lock's digest
and reused). ``--env current``, or a commit that pins no lock (nothing to
rebuild), runs them in the environment canon runs in. Either way the run
records which (``EnvironmentUsed``).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canon.declare.project import EnvironmentSpec
from canon.events import Emit, Notice
from canon.stores.exprefs import ExperimentError

MODES = ("rebuild", "current")


@dataclass(frozen=True)
class EnvironmentUsed:
    """The environment a commit's stages ran in."""

    rebuilt: bool  # the commit's lock installed into a venv (else: the current environment)
    description: str
    python: str
    requirements: str | None = None  # the lock's digest
    packages: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # what the lock's packages require and it lacks

    def to_dict(self) -> dict[str, Any]:
        return {
            "rebuilt": self.rebuilt,
            "description": self.description,
            "python": self.python,
            "requirements": self.requirements,
            "packages": list(self.packages),
            "problems": list(self.problems),
        }

    def failure_hint(self) -> str:
        """The hint for a stage that failed in this environment."""
        if self.problems:
            return (
                f"its lock is incomplete ({'; '.join(self.problems)[:200]}): add what is "
                "missing and commit, or pass --env current to run in this environment"
            )
        if self.rebuilt:
            return "see the stage's log: a package the stage needs may be missing from the lock"
        return "see the stage's log; the environment may have changed since"


def environment_for(
    root: Path,
    tree: Path,
    declared: EnvironmentSpec,
    rev: str,
    mode: str,
    emit: Emit,
    commit: str | None = None,
) -> tuple[EnvironmentUsed, dict[str, str]]:
    """``rev``'s environment (``commit``, checked out at ``tree``) for ``mode``, and what
    its stages' environment gets to run in it. A declared Python not on this machine raises
    ``EnvironmentBuildError``; so does a lock pip cannot install."""
    from canon.executors import venv

    here = platform.python_version()
    if mode == "current" or declared.requirements is None:
        why = "--env current" if mode == "current" else f"{rev} pins no requirements lock"
        note = f"the current environment ({why}; Python {here})"
        if declared.python and not venv.matches(here, declared.python):
            note += f", not the declared Python {declared.python}"
        return EnvironmentUsed(False, note, here), {}
    label = declared.requirements
    lock = _read_lock(tree, label, rev)
    emit(
        Notice(
            f"{rev}'s environment: Python {declared.python or here} + {label} "
            "(a venv in .canon/envs, built once per lock)"
        )
    )
    built = venv.ensure(
        root / ".canon" / "envs", declared.python, lock, label=label, base=tree, commit=commit
    )
    for problem in built.problems:
        emit(Notice(f"{rev}'s {label} is incomplete: {problem}"))
    used = EnvironmentUsed(
        True,
        f"{rev}'s environment ({label}: {built.describe()})",
        built.python,
        built.requirements,
        built.packages,
        built.problems,
    )
    return used, built.stage_env()


def _read_lock(tree: Path, label: str, rev: str) -> bytes:
    """The lock file at ``tree/label``: a regular file inside the tree (as ``canon apply``
    reads its inputs: never through a symlink, so a commit cannot make canon read, and
    pip echo, a file outside it)."""
    import os

    path = tree / label
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        why = "is a symbolic link" if path.is_symlink() else (exc.strerror or str(exc))
        raise ExperimentError(
            f"{rev}: environment.requirements {label} cannot be read: {why}",
            hint="its commit must contain the lock it declares, as a regular file; "
            "or pass --env current",
        ) from exc
    with os.fdopen(fd, "rb") as f:
        if not path.resolve().is_relative_to(tree.resolve()):
            raise ExperimentError(
                f"{rev}: environment.requirements {label} is outside the repository",
                hint="declare a lock inside the repository",
            )
        return f.read()
