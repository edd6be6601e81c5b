"""``canon init``: start a project, or write the bundled example."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click


@click.command("init", help="Create a canon project in DIR (default: here).")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--example", metavar="NAME", help="Write a complete example project (e.g. weather).")
@click.option("--force", is_flag=True, help="Overwrite an existing canon.yaml.")
@click.pass_context
def command(ctx: click.Context, directory: Path | None, example: str | None, force: bool) -> int:
    from canon.interfaces.scaffold import FALLBACK_EMAIL, FALLBACK_NAME, init_project

    cwd: Path = ctx.obj["cwd"]
    root = (cwd / directory) if directory else cwd
    root.mkdir(parents=True, exist_ok=True)
    result = init_project(root, example, force=force)
    written, git = result.written, result.git
    what = f"the {example} example" if example else "a canon project"
    click.echo(f"Wrote {what} in {root} ({len(written)} files).")
    if git.commit is not None:
        where = "a new Git repository" if git.created else "the repository"
        click.echo(
            f"Committed them in {where}: {git.commit[:12]} {git.message!r} "
            "(canon builds images from commits)."
        )
        if git.fallback_author:
            click.echo(
                f"  git has no user.name/user.email, so the author is "
                f"{FALLBACK_NAME} <{FALLBACK_EMAIL}>; after setting yours, "
                "`git commit --amend --reset-author` makes it yours."
            )
    elif git.available and written:
        targets = [root] if result.root_was_empty else [root / rel for rel in written]
        paths = [os.path.relpath(target, cwd) for target in targets]
        click.echo(
            "Not committed: this repository already has commits, and canon builds images "
            "from commits. To commit what was written:"
        )
        click.echo(
            f"  git add -- {' '.join(map(shlex.quote, paths))} && "
            f"git commit -m {shlex.quote(git.message or 'canon init')}"
        )
    click.echo("Next: canon status, then canon apply")
    return 0
