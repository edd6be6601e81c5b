"""What every subcommand needs: the project root, the profile, JSON output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def root_of(ctx: click.Context) -> Path:
    from canon.apply.session import find_root

    cwd: Path = ctx.obj["cwd"]
    return find_root(cwd)


def profile_of(ctx: click.Context) -> str | None:
    profile: str | None = ctx.obj["profile"]
    return profile


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")
