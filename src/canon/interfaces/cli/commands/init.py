"""``canon init``: start a project, or write the bundled example."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("init", help="Create a canon project in DIR (default: here).")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--example", metavar="NAME", help="Write a complete example project (e.g. weather).")
@click.option("--force", is_flag=True, help="Overwrite an existing canon.yaml.")
@click.pass_context
def command(ctx: click.Context, directory: Path | None, example: str | None, force: bool) -> int:
    from canon.interfaces.scaffold import init_project

    cwd: Path = ctx.obj["cwd"]
    root = (cwd / directory) if directory else cwd
    root.mkdir(parents=True, exist_ok=True)
    written = init_project(root, example, force=force)
    what = f"the {example} example" if example else "a canon project"
    click.echo(f"Wrote {what} in {root} ({len(written)} files).")
    click.echo("Next: canon status, then canon apply")
    return 0
