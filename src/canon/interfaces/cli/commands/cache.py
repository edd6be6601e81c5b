"""``canon cache verify [--repair] [-r REMOTE]``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from canon.interfaces.cli.commands._common import print_json, profile_of, root_of


@click.group("cache", help="Inspect and repair the local object cache (.canon/cache).")
def command() -> None:
    pass


@command.command(
    "verify",
    help="Re-hash every object in the cache (nothing trusted but the bytes). Exit 1 if any "
    "is corrupt. --repair deletes corrupt objects and fetches the ones canon.lock needs "
    "again from a remote (-r NAME, else the profile's; --no-fetch to skip).",
)
@click.option("--repair", is_flag=True, help="Delete corrupt objects (and re-fetch them).")
@click.option("-r", "--remote", default=None, metavar="NAME", help="Re-fetch from this remote.")
@click.option(
    "--no-fetch", is_flag=True, help="With --repair: delete only, fetch nothing from a remote."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def verify(
    ctx: click.Context, repair: bool, remote: str | None, no_fetch: bool, as_json: bool
) -> int:
    from canon.apply.cacherepair import run_verify
    from canon.interfaces.cli.commands._transfer import close, make_emit

    root = root_of(ctx)
    project_remotes = _has_remotes(root, profile_of(ctx))
    use_remote = repair and not no_fetch and (remote is not None or project_remotes)
    emit = make_emit(as_json)
    try:
        result = run_verify(
            root,
            profile=profile_of(ctx),
            repair=repair,
            remote=remote,
            use_remote=use_remote,
            emit=emit,
            argv=["canon", *sys.argv[1:]],
        )
    finally:
        close(emit)
    report = result.report
    if as_json:
        print_json(
            {
                "checked": report.checked,
                "size": report.size,
                "corrupt": list(report.corrupt),
                "strays": list(report.strays),
                "removed": result.removed,
                "refetched": result.refetched,
            }
        )
    else:
        click.echo(f"checked {report.checked:,} object(s), {report.size:,} bytes")
        for d in report.corrupt:
            click.echo(f"corrupt  {d}" + ("  (removed)" if d in result.removed else ""))
        for s in report.strays:
            click.echo(f"stray    {s}" + ("  (removed)" if s in result.removed else ""))
        if result.refetched:
            click.echo(f"re-fetched {result.refetched} object(s) from the remote")
        if (report.corrupt or report.strays) and not repair:
            click.echo("hint: run `canon cache verify --repair` (add -r NAME to re-fetch)")
    return 1 if (report.corrupt or report.strays) and not repair else 0


def _has_remotes(root: Path, profile: str | None) -> bool:
    from canon.declare.memo import load_project_memoised

    return load_project_memoised(root, profile=profile).remote is not None
