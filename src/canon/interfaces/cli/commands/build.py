"""``canon build``: build the declared images that are out of date; ``--check`` rebuilds."""

from __future__ import annotations

import click

from canon.interfaces.cli.commands._common import profile_of, root_of
from canon.interfaces.cli.commands._images import ImageEvents


@click.command(
    "build",
    help="Build the declared images (artifacts:) that are out of date, into .canon/images.\n\n"
    "NAMES are artifacts (default: all); a model's base is built first when needed.",
)
@click.argument("names", nargs=-1)
@click.option("-f", "--force", is_flag=True, help="Build even if canon.lock says up to date.")
@click.option(
    "--check",
    is_flag=True,
    help="Rebuild each recorded image from its commit and compare with canon.lock.",
)
@click.option("--json", "as_json", is_flag=True, help="Emit events as JSON lines.")
@click.pass_context
def command(
    ctx: click.Context, names: tuple[str, ...], force: bool, check: bool, as_json: bool
) -> int:
    from canon.apply.images import build_images, check_images

    root, emit = root_of(ctx), ImageEvents(as_json)
    if check:
        check_images(root, profile=profile_of(ctx), names=names, emit=emit)
    else:
        build_images(root, profile=profile_of(ctx), names=names, force=force, emit=emit)
    return 0
