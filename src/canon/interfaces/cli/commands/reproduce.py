"""``canon reproduce REV``: re-run a past commit's stages and compare with its lock."""

from __future__ import annotations

import json
import os

import click

from canon.interfaces.cli.commands._common import profile_of, root_of


@click.command(
    "reproduce",
    help="Re-run REV's stages in a temporary worktree (run cache off), in REV's "
    "environment rebuilt from its requirements lock, and compare every output digest and "
    "metric with REV's canon.lock.",
)
@click.argument("rev")
@click.option("--check", is_flag=True, help="Exit 1 unless every stage reproduces.")
@click.option(
    "--rtol",
    type=float,
    default=1e-6,
    show_default=True,
    help="Relative tolerance for the metrics of deterministic: false stages.",
)
@click.option("--atol", type=float, default=1e-9, show_default=True)
@click.option(
    "--env",
    "env",
    type=click.Choice(["rebuild", "current"]),
    default="rebuild",
    show_default=True,
    help="rebuild: a venv of REV's declared Python with its requirements lock installed "
    "(kept in .canon/envs/ for the next reproduce of that lock); current: the environment "
    "canon runs in.",
)
@click.option(
    "--images",
    is_flag=True,
    help="Also rebuild the images REV's lock records (a base from REV's commit, a model "
    "from the reproduced outputs) and compare their digests.",
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def command(
    ctx: click.Context,
    rev: str,
    check: bool,
    rtol: float,
    atol: float,
    env: str,
    images: bool,
    jobs: int | None,
    as_json: bool,
) -> int:
    from canon.apply.reproduce import reproduce
    from canon.interfaces.cli.progress import Console, JsonLines

    emit = JsonLines() if as_json else Console(live=True)
    try:
        report = reproduce(
            root_of(ctx),
            rev,
            profile=profile_of(ctx),
            emit=emit,
            rtol=rtol,
            atol=atol,
            jobs=jobs or os.cpu_count() or 1,
            env=env,
            images=images,
        )
    finally:
        emit.close()
    if as_json:  # after the JSON-lines events: the report, as the last line
        click.echo(json.dumps({"report": report.to_dict()}, default=str))
    else:
        click.echo(f"reproduce {rev} ({report.commit[:12]}, profile {report.profile}):")
        if report.environment is not None:
            click.echo(f"  in {report.environment.description}")
        pins = report.provenance.get("datasets") or {}
        if pins:
            shown = ", ".join(f"{n} {d[:19]}…" for n, d in sorted(pins.items()))
            click.echo(f"  on the data its lock pins: {shown}")
        for s in report.stages:
            click.echo(f"  {s.stage:<20} {s.verdict}")
            for f in s.files:
                click.echo(f"      differs: {f}")
            for k, (a, b) in s.metrics.items():
                click.echo(f"      metric {k}: {a} -> {b}")
        for i in report.images:
            shown = f"image.{i.name}"
            click.echo(f"  {shown:<20} {i.verdict} {i.rebuilt}")
            if not i.same:
                click.echo(f"      canon.lock records {i.recorded}")
            for layer in i.layers:
                click.echo(f"      {layer}")
        click.echo("Reproduced." if report.ok else "NOT reproduced.")
    return 1 if check and not report.ok else 0
