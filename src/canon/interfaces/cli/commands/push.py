"""``canon push``: see ``canon.apply.sync``."""

from __future__ import annotations

import click

from canon.interfaces.cli.commands._common import profile_of, root_of
from canon.interfaces.cli.commands._transfer import close, make_emit, transfer_options

HELP = (
    "Upload the objects canon.lock references that the remote lacks.\n\n"
    "Small files travel in packs; only what is missing is sent; safe to interrupt."
    "\n\nTARGETS are stage names, datasets (data.NAME) or output paths (default: all)."
)


@click.command("push", help=HELP)
@transfer_options
@click.pass_context
def command(
    ctx: click.Context,
    targets: tuple[str, ...],
    remote: str | None,
    jobs: int | None,
    as_json: bool,
) -> int:
    from canon.apply.sync import run_push

    emit = make_emit(as_json)
    try:
        run_push(
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
