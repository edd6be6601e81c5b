"""``canon rollback ENV [--to COMMIT]``: pin an earlier image in canon.lock, commit, roll out."""

from __future__ import annotations

import click

from canon.interfaces.cli.commands._common import profile_of, root_of


@click.command(
    "rollback",
    help="Roll deployment ENV back: pin the image canon.lock had at --to COMMIT (default: "
    "the previous different one), commit canon.lock, and roll out.",
)
@click.argument("environment")
@click.option("--to", "to", default=None, help="The commit whose pinned image to deploy.")
@click.pass_context
def command(ctx: click.Context, environment: str, to: str | None) -> int:
    from canon.apply.rollback import rollback

    def emit(event: object) -> None:
        click.echo(getattr(event, "message", str(event)))

    from canon.apply.deployments import repo_locked

    root = root_of(ctx)
    with repo_locked(root, ["canon", "rollback", environment]):
        r = rollback(root, profile=profile_of(ctx), environment=environment, to=to, emit=emit)
    click.echo(f"{r.outcome:<12} {r.environment} {r.digest[:19]}…  {r.reason}")
    return 0 if r.ok else 1
