"""``canon data``: list, check, re-pin and add declared datasets."""

from __future__ import annotations

import sys
from typing import Any

import click

from canon.interfaces.cli.commands._common import print_json, profile_of, root_of


@click.group("data", help="Declared datasets: ls, status, update, add.")
def command() -> None:
    pass


def _emitter(as_json: bool) -> Any:
    from canon.interfaces.cli.progress import Console, JsonLines

    return JsonLines() if as_json else Console(live=False)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@command.command("ls", help="Each dataset: its pin, size, files, source and subset relation.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def ls(ctx: click.Context, as_json: bool) -> int:
    from canon.apply.datasets import list_datasets

    rows = list_datasets(root_of(ctx), profile_of(ctx))
    if as_json:
        print_json([r.to_dict() for r in rows])
        return 0
    if not rows:
        click.echo("No datasets declared (canon data add NAME SOURCE declares one).")
        return 0
    table = [("NAME", "KIND", "PIN", "SIZE", "FILES", "SOURCE")]
    for r in rows:
        pin = r.pin
        source = r.source
        if pin is not None and pin.subset_of is not None:
            source += f" @ {pin.subset_of.digest[7:19]}"
        table.append(
            (
                r.name,
                r.kind,
                pin.content.digest[7:19] if pin else "(not pinned)",
                _size(pin.content.size) if pin else "",
                str(pin.content.nfiles) if pin else "",
                source,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[5])
    return 0


_STATE_COLOURS = {"ok": "green", "drift": "red", "missing": "red", "not-immutable": "red"}


@command.command(
    "status",
    help="Compare each pinned dataset's source with its pin (queries are run again). "
    "Exit 1 when any differs.",
)
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, names: tuple[str, ...], as_json: bool) -> int:
    from canon.apply.datasets import dataset_status

    rows = dataset_status(root_of(ctx), profile_of(ctx), names)
    if as_json:
        print_json([r.to_dict() for r in rows])
    else:
        for r in rows:
            state = click.style(f"{r.state:<14}", fg=_STATE_COLOURS.get(r.state, "yellow"))
            click.echo(f"{state}data.{r.name}  {r.source}")
            if r.detail:
                click.echo(f"              {r.detail}")
        if any(r.state == "drift" for r in rows):
            click.echo(
                "\nStages keep reading the pins; `canon data update NAME` re-pins on purpose."
            )
    return 0 if all(r.clean for r in rows) else 1


@command.command("update", help="Re-pin datasets from their sources now (on purpose).")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Re-pin every dataset.")
@click.option("--wait", type=float, default=0.0, metavar="SECONDS", help="Wait for the lock.")
@click.option("--json", "as_json", is_flag=True, help="Emit events as JSON lines.")
@click.pass_context
def update(
    ctx: click.Context, names: tuple[str, ...], all_: bool, wait: float, as_json: bool
) -> int:
    from canon.apply.datasets import update_datasets

    if not names and not all_:
        raise click.UsageError("name the datasets to re-pin, or pass --all")
    emit = _emitter(as_json)
    try:
        update_datasets(
            root_of(ctx),
            profile_of(ctx),
            names,
            emit=emit,
            argv=["canon", *sys.argv[1:]],
            wait=wait,
        )
    finally:
        emit.close()
    return 0


@command.command("add", help="Declare a dataset in canon.yaml and pin it.")
@click.argument("name")
@click.argument("source")
@click.option("--description", "-d", default=None, help="A line saying what the data is.")
@click.option("--json", "as_json", is_flag=True, help="Emit events as JSON lines.")
@click.pass_context
def add(ctx: click.Context, name: str, source: str, description: str | None, as_json: bool) -> int:
    from canon.apply.datasets import add_dataset

    emit = _emitter(as_json)
    try:
        add_dataset(
            root_of(ctx),
            profile_of(ctx),
            name,
            source,
            emit=emit,
            description=description,
            argv=["canon", *sys.argv[1:]],
        )
    finally:
        emit.close()
    return 0
