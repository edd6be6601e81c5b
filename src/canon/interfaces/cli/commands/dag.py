"""``canon dag``: print the pipeline graph."""

from __future__ import annotations

import click

from canon.interfaces.cli.commands._common import profile_of, root_of


@click.command("dag", help="Print the pipeline graph.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "mermaid", "dot"]),
    default="text",
    show_default=True,
)
@click.pass_context
def command(ctx: click.Context, fmt: str) -> int:
    from canon.apply.session import load
    from canon.graph import render

    project, pipeline = load(root_of(ctx), profile_of(ctx))
    renderer = {
        "text": render.render_text,
        "mermaid": render.render_mermaid,
        "dot": render.render_dot,
    }[fmt]
    click.echo(renderer(project, pipeline))
    return 0
