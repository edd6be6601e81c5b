"""The project root: the nearest folder holding canon.yaml, and where canon keeps
its own state under it. Light on purpose: every command starts here."""

from __future__ import annotations

from pathlib import Path

from canon.errors import CanonError

__all__ = ["STATE_DIR", "NotAProjectError", "find_root", "stat_cache_path"]

STATE_DIR = ".canon"


class NotAProjectError(CanonError):
    code = "project.not_found"


def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding canon.yaml."""
    here = start.resolve()
    for candidate in (here, *here.parents):
        if (candidate / "canon.yaml").is_file():
            return candidate
    raise NotAProjectError(
        f"no canon.yaml in {here} or any parent directory",
        hint="run `canon init` to start a project, or `-C DIR` to point at one",
    )


def stat_cache_path(root: Path) -> Path:
    """The workspace's stat cache (``StatCache``): what the last walks saw."""
    return root / STATE_DIR / "state.db"
