"""``canon plan``: show or save what ``canon apply`` would do."""

from __future__ import annotations

import json
from pathlib import Path

import click

from canon.interfaces.cli.commands._common import print_json, profile_of, root_of
from canon.interfaces.cli.planview import render_plan


@click.command("plan", help="Show or save what `canon apply` would do, and why.")
@click.argument("targets", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the plan; `canon apply FILE` applies exactly it, or refuses if stale.",
)
@click.option("--force", "-f", is_flag=True, help="Plan to run the targets even if up to date.")
@click.pass_context
def command(
    ctx: click.Context, targets: tuple[str, ...], as_json: bool, out: Path | None, force: bool
) -> int:
    root = root_of(ctx, walks=True)  # before the imports below: the walks overlap them
    from canon.apply.session import make_plan
    from canon.stores.atomic import atomic_write

    planned = make_plan(
        root, profile=profile_of(ctx), targets=targets, force=force, with_commit=True
    )
    plan = planned.plan
    if out is not None:
        atomic_write(out, json.dumps(plan.to_dict(), indent=2).encode() + b"\n")
    if as_json:
        print_json(plan.to_dict())
    else:
        click.echo(render_plan(plan, verb="plan"))
        if out is not None:
            click.echo(f"\nSaved to {out}. Apply exactly this plan with: canon apply {out}")
    return 0
