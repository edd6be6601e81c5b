"""``canon fetch``: see ``canon.apply.sync``."""

from __future__ import annotations

import click

from canon.interfaces.cli.commands._common import profile_of, root_of
from canon.interfaces.cli.commands._transfer import close, make_emit, transfer_options

HELP = (
    "Download the objects canon.lock references that the cache lacks (verified).\n\n"
    "The workspace is not touched: `canon pull` also restores outputs."
    "\n\nTARGETS are stage names, datasets (data.NAME) or output paths (default: all)."
)


@click.command("fetch", help=HELP)
@transfer_options
@click.pass_context
def command(
    ctx: click.Context,
    targets: tuple[str, ...],
    remote: str | None,
    jobs: int | None,
    as_json: bool,
) -> int:
    from canon.apply.sync import run_fetch

    emit = make_emit(as_json)
    try:
        run_fetch(
            root_of(ctx),
            profile=profile_of(ctx),
            remote=remote,
            targets=targets,
            jobs=jobs,
            emit=emit,
        )
    finally:
        close(emit)
    return 0
