"""``canon push-image``: push a built image to an OCI registry (only missing blobs)."""

from __future__ import annotations

import click

from canon.interfaces.cli.commands._common import profile_of, root_of
from canon.interfaces.cli.commands._images import ImageEvents


@click.command("push-image", help="Push built images to the profile's (or the given) registry.")
@click.argument("names", nargs=-1)
@click.option("--registry", default=None, metavar="HOST[:PORT]/NAMESPACE", help="Where to push.")
@click.option("--json", "as_json", is_flag=True, help="Emit events as JSON lines.")
@click.pass_context
def command(ctx: click.Context, names: tuple[str, ...], registry: str | None, as_json: bool) -> int:
    from canon.apply.images import recorded
    from canon.apply.registries import push_image

    root = root_of(ctx)
    project, state, _ = recorded(root, profile_of(ctx))
    chosen = list(names) or [n for n in project.artifacts if n in state.images]
    if not chosen:  # nothing to push is not an error, but say so
        from canon.interfaces.cli.commands.images import NOTHING_DECLARED

        if not as_json:
            click.echo(
                NOTHING_DECLARED
                if not project.artifacts
                else "No images built yet: nothing to push (run `canon build`)."
            )
        return 0
    emit = ImageEvents(as_json)
    for name in chosen:
        push_image(root, profile=profile_of(ctx), name=name, registry=registry, emit=emit)
    return 0
