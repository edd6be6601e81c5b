"""``canon pull``: fetch, then restore the workspace paths canon.lock records."""

from __future__ import annotations

import sys

import click

from canon.interfaces.cli.commands._common import profile_of, root_of
from canon.interfaces.cli.commands._transfer import close, make_emit, transfer_options

HELP = (
    "Fetch what the cache lacks (verified), then restore the outputs and datasets "
    "canon.lock records that are missing from the workspace.\n\n"
    "A path that differs from the lock is kept unless --force.\n\n"
    "TARGETS are stage names, datasets (data.NAME) or output paths (default: all)."
)


@click.command("pull", help=HELP)
@transfer_options
@click.option("-f", "--force", is_flag=True, help="Also replace paths that differ from the lock.")
@click.option(
    "--wait", type=float, default=0.0, metavar="SECONDS", help="Wait for a running apply."
)
@click.pass_context
def command(
    ctx: click.Context,
    targets: tuple[str, ...],
    remote: str | None,
    jobs: int | None,
    as_json: bool,
    force: bool,
    wait: float,
) -> int:
    from canon.apply.sync import run_pull

    emit = make_emit(as_json)
    try:
        result = run_pull(
            root_of(ctx),
            profile=profile_of(ctx),
            remote=remote,
            targets=targets,
            jobs=jobs,
            force=force,
            emit=emit,
            argv=["canon", *sys.argv[1:]],
            wait=wait,
        )
    finally:
        close(emit)
    return 1 if result.kept else 0
