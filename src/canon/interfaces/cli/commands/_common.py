"""What every subcommand needs: the project root, the profile, JSON output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def root_of(ctx: click.Context, *, walks: bool = False) -> Path:
    """The project root. ``walks``: the command is about to observe the workspace,
    so the walks of its big trees start now, in the background (``walk.begin``)."""
    from canon.observe.root import find_root

    cwd: Path = ctx.obj["cwd"]
    root = find_root(cwd)
    if walks:
        from canon.observe.walk import begin_known

        begin_known(root)
    return root


def profile_of(ctx: click.Context) -> str | None:
    profile: str | None = ctx.obj["profile"]
    return profile


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")
