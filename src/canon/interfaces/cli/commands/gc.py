"""``canon gc``: delete objects that no commit, ref or lock references."""

from __future__ import annotations

import sys

import click

from canon.interfaces.cli.commands._common import print_json, profile_of, root_of


@click.command(
    "gc",
    help="Delete objects that no canon.lock in any commit reachable from any ref (branches, "
    "tags, refs/canon/*), the index or the working tree references. Local cache by default; "
    "-r NAME collects on that remote instead. Run-cache entries whose outputs go are dropped. "
    "Locally, image blobs in .canon/images that no recorded image or tag reaches go too, "
    "environments `canon reproduce` rebuilt (.canon/envs) unused for a week, and failed "
    "runs' kept logs a week old.",
)
@click.option("-n", "--dry-run", is_flag=True, help="Only say what would be deleted.")
@click.option("-r", "--remote", default=None, metavar="NAME", help="Collect on this remote.")
@click.option(
    "--min-age",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Keep garbage younger than this (default: 0 for the local cache, 3600 on a remote "
    "and for image blobs, a week for rebuilt environments).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def command(
    ctx: click.Context, dry_run: bool, remote: str | None, min_age: float | None, as_json: bool
) -> int:
    from canon.apply.gc import run_gc
    from canon.interfaces.cli.commands._transfer import close, make_emit
    from canon.interfaces.cli.transferview import human_size

    emit = make_emit(as_json)
    try:
        result = run_gc(
            root_of(ctx),
            profile=profile_of(ctx),
            remote=remote,
            dry_run=dry_run,
            min_age=min_age,
            emit=emit,
            argv=["canon", *sys.argv[1:]],
        )
    finally:
        close(emit)
    if as_json:
        print_json(
            {
                "where": result.where,
                "dry_run": result.dry_run,
                "kept": result.kept,
                "removed": result.removed,
                "size": result.size,
                "runs_dropped": result.runs_dropped,
                "mixed_packs": result.mixed_packs,
                "young": result.young,
                "images": None
                if result.images is None
                else {
                    "where": result.images.where,
                    "kept": result.images.kept,
                    "removed": result.images.removed,
                    "size": result.images.size,
                    "young": result.images.young,
                    "temp": result.images.temp,
                },
                "envs": result.envs,
                "logs": result.logs,
            }
        )
        return 0
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {len(result.removed):,} object(s)/file(s), {human_size(result.size)} "
        f"from {result.where}; kept {result.kept:,} referenced object(s)"
    )
    if result.runs_dropped:
        click.echo(f"{verb} {result.runs_dropped} run-cache entr(y/ies) whose outputs go")
    if result.young:
        click.echo(f"kept {result.young} unreferenced item(s) younger than --min-age")
    images = result.images
    if images is not None and (images.kept or images.removed or images.young or images.temp):
        click.echo(
            f"{verb} {len(images.removed):,} image blob(s), {human_size(images.size)} "
            f"from {images.where}; kept {images.kept:,} referenced blob(s)"
        )
        if images.young:
            click.echo(
                f"kept {images.young} unreferenced image blob(s) younger than --min-age "
                "(default 1 hour: `canon pull-image` may be writing them)"
            )
        if images.temp:
            click.echo(
                f"{verb} {images.temp} temp file(s) or scratch layout(s) "
                "of killed image writes/checks"
            )
    if result.envs:
        click.echo(
            f"{verb} {len(result.envs)} rebuilt environment(s) from .canon/envs "
            "unused for longer than --min-age (default a week)"
        )
    if result.logs:
        click.echo(
            f"{verb} the kept logs of {len(result.logs)} failed run(s) from .canon/exps/logs "
            "older than --min-age (default a week)"
        )
    return 0
