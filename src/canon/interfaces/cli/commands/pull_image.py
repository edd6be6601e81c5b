"""``canon pull-image REF``: pull an image into .canon/images, verified; the lock's pin wins."""

from __future__ import annotations

import click

from canon.interfaces.cli.commands._common import profile_of, root_of
from canon.interfaces.cli.commands._images import ImageEvents


@click.command(
    "pull-image", help="Pull an image (registry/repo:tag or @digest) into .canon/images."
)
@click.argument("reference")
@click.option("--platform", default="linux/amd64", help="Platform to pick from an index.")
@click.pass_context
def command(ctx: click.Context, reference: str, platform: str) -> int:
    from canon.apply.registries import pull_image

    descriptor = pull_image(
        root_of(ctx),
        profile=profile_of(ctx),
        reference=reference,
        emit=ImageEvents(),
        platform=platform,
    )
    click.echo(f"pulled      {reference}  {descriptor.digest}")
    return 0
