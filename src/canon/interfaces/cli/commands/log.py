"""``canon log``: the ledger of past applies and the stages they ran."""

from __future__ import annotations

import time

import click

from canon.interfaces.cli.commands._common import print_json, root_of


@click.command("log", help="Show the ledger of past applies and the stages they ran.")
@click.option("-n", "limit", default=10, show_default=True, help="How many applies to show.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def command(ctx: click.Context, limit: int, as_json: bool) -> int:
    from canon.stores.ledger import Ledger

    path = root_of(ctx) / ".canon" / "ledger.db"
    if not path.exists():
        click.echo("No applies recorded yet.")
        return 0
    ledger = Ledger(path)
    try:
        applies = ledger.applies(limit)
        for a in applies:
            a["stages"] = ledger.stage_runs(a["id"])
    finally:
        ledger.close()
    if as_json:
        print_json(applies)
        return 0
    for a in applies:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["started"]))
        commit = (a["commit_sha"] or "no commit")[:12]
        click.echo(f"apply {a['id']}  {when}  {a['status']}  profile={a['profile']}  {commit}")
        for s in a["stages"]:
            key = (s["key"] or "")[7:19]
            click.echo(f"    {s['stage']:<20} {s['status']:<10} {s['duration']:7.2f}s  key {key}")
            if s.get("reason"):
                click.echo(f"      {s['reason']}")
    return 0
