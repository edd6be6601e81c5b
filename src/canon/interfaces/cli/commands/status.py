"""``canon status``: what is out of date, and why. Exit 1 when anything is."""

from __future__ import annotations

import click

from canon.interfaces.cli.commands._common import print_json, profile_of, root_of
from canon.interfaces.cli.planview import render_plan


@click.command("status", help="Say what is out of date and why (exit 1 when anything is).")
@click.argument("targets", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def command(ctx: click.Context, targets: tuple[str, ...], as_json: bool) -> int:
    root = root_of(ctx, walks=True)  # before the imports below: the walks overlap them
    from canon.apply.session import make_plan

    planned = make_plan(root, profile=profile_of(ctx), targets=targets, drift=True)
    plan = planned.plan
    if as_json:
        print_json({**plan.to_dict(), "up_to_date": plan.up_to_date, "drift": plan.drift})
    else:
        click.echo(render_plan(plan, verb="status"))
    return 0 if plan.up_to_date else 1
