"""Options shared by ``canon push``, ``fetch`` and ``pull``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from canon.events import Emit

F = Callable[..., Any]


def transfer_options(fn: F) -> F:
    fn = click.option("--json", "as_json", is_flag=True, help="Emit events as JSON lines.")(fn)
    fn = click.option(
        "-j",
        "--jobs",
        type=click.IntRange(1, 256),
        default=None,
        help="Transfers at once (default: the remote's jobs:, else 8).",
    )(fn)
    fn = click.option(
        "-r", "--remote", default=None, metavar="NAME", help="The remote (default: the profile's)."
    )(fn)
    fn = click.argument("targets", nargs=-1)(fn)
    return fn


def make_emit(as_json: bool) -> Any:
    if as_json:
        from canon.interfaces.cli.progress import JsonLines

        return JsonLines()
    from canon.interfaces.cli.transferview import TransferConsole

    return TransferConsole()


def close(emit: Emit) -> None:
    closer = getattr(emit, "close", None)
    if closer is not None:
        closer()
