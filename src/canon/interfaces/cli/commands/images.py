"""``canon images``: the images recorded for this profile, their layers and sizes."""

from __future__ import annotations

from typing import Any

import click

from canon.interfaces.cli.commands._common import print_json, profile_of, root_of
from canon.interfaces.cli.commands._images import size


@click.command("images", help="List the built images, their layers and sizes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> int:
    from canon.apply.images import describe_images

    images: list[dict[str, Any]] = describe_images(root_of(ctx), profile=profile_of(ctx))
    if as_json:
        print_json(images)
        return 0
    if not images:
        click.echo(_nothing(ctx))
    for image in images:
        click.echo(
            f"image.{image['name']}  {image['kind']}  {image['digest']}  "
            f"{size(image['size'])}  commit {image['commit'][:12]}"
            + ("" if image["stored"] else "  (not in .canon/images: `canon build`)")
        )
        for layer in image["layers"]:
            shared = "  (from base)" if layer["shared"] else ""
            click.echo(
                f"  {layer['digest']}  {size(layer['size']):>10}  {layer['created_by']}{shared}"
            )
        for repository, tag in image["pushed"].items():
            click.echo(f"  pushed: {repository}:{tag}")
    return 0


def _nothing(ctx: click.Context) -> str:
    """One line for an empty list: nothing declared, or nothing built yet."""
    from canon.declare.memo import load_project_memoised

    if not load_project_memoised(root_of(ctx), profile=profile_of(ctx)).artifacts:
        return NOTHING_DECLARED
    return "No images built yet (run `canon build`)."


NOTHING_DECLARED = (
    "No images declared (add a kind: base and a kind: model artifact under artifacts: "
    "in canon.yaml; see the README's Images section)."
)
