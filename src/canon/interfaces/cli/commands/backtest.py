"""``canon backtest``: earlier models, with their own code, on other time windows."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from canon.interfaces.cli.commands._common import profile_of, root_of


@click.command(
    "backtest",
    help="Evaluate the models of earlier commits (their own code, params and data pins) on "
    "other time windows or other data: a models x columns table, each cell recorded as an "
    "experiment.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    metavar="REV[,REV...]",
    help="Commits (or tags, experiments) whose models to test.",
)
@click.option(
    "--window",
    "windows",
    multiple=True,
    metavar="START..END",
    help="A time window, e.g. 2014-01-01..2014-12-31 (repeat for more).",
)
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="[SLOT=]NAME[@REV]",
    help="Test on dataset NAME as REV's canon.lock pins it (no @REV: as pinned now), "
    "in place of SLOT (default: NAME, or the only dataset). Repeat for more.",
)
@click.option(
    "--model-stage",
    default=None,
    metavar="STAGE",
    help="With --data: the stage whose outputs are the model, kept as the model's "
    "commit made them [default: train].",
)
@click.option(
    "--window-params",
    default="evaluate.test_from,evaluate.test_until",
    show_default=True,
    metavar="FROM_KEY,UNTIL_KEY",
    help="The params that select the evaluation window.",
)
@click.option(
    "--env",
    "env",
    type=click.Choice(["current", "rebuild"]),
    default="current",
    show_default=True,
    help="current: every cell runs in the environment canon runs in; rebuild: each "
    "model's cells run in its commit's declared environment, rebuilt (a venv of the "
    "declared Python with its requirements lock installed, kept in .canon/envs/).",
)
@click.option("--metric", default=None, help="Metric shown in the table (default: the first).")
@click.option(
    "--plot",
    "plot_to",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Where the plot of the matrix goes (.png, .svg or .html) "
    "[default: .canon/plots/backtest-METRIC.png].",
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def command(
    ctx: click.Context,
    models: tuple[str, ...],
    windows: tuple[str, ...],
    data: tuple[str, ...],
    model_stage: str | None,
    window_params: str,
    metric: str | None,
    plot_to: Path | None,
    env: str,
    jobs: int | None,
    as_json: bool,
) -> int:
    from canon.apply.backtest import backtest, parse_window
    from canon.events import Event, Notice

    def notices(event: Event) -> None:  # on stderr: --json keeps stdout one document
        if isinstance(event, Notice):
            click.echo(f"note: {event.message}", err=True)

    keys = [k.strip() for k in window_params.split(",")]
    if len(keys) != 2 or not all(keys):
        raise click.UsageError("--window-params takes two params keys: FROM_KEY,UNTIL_KEY")
    revs = [r for m in models for r in m.split(",") if r]
    result = backtest(
        root_of(ctx),
        revs,
        [parse_window(w) for w in windows],
        data=data,
        model_stage=model_stage,
        window_params=(keys[0], keys[1]),
        profile=profile_of(ctx),
        emit=notices,
        jobs=jobs or os.cpu_count() or 1,
        env=env,
    )
    name = metric or next((k for c in result.cells for k in c.metrics), "")
    if as_json:  # one document on stdout; the plot only when asked for
        doc = result.to_dict()
        if plot_to is not None:
            doc["plot"] = str(_plot(root_of(ctx), result, name, plot_to) or "")
        click.echo(json.dumps(doc, default=str))
        return 0 if all(not c.error for c in result.cells) else 1
    width = max(len(r) for r in result.models) + 2
    col = max(26, *(len(w) + 2 for w in result.windows))
    click.echo(f"{name or 'metric':<{width}}" + "".join(f"{w:>{col}}" for w in result.windows))
    for rev in result.models:
        row = f"{rev:<{width}}"
        for w in result.windows:
            cell = result.cell(rev, w)
            value = "-" if cell is None else ("failed" if cell.error else cell.metrics.get(name))
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            row += f"{shown:>{col}}"
        click.echo(row)
    for rev in result.models:
        click.echo(f"model {rev}: {result.obtained(rev)}")
        click.echo(f"model {rev} ran in {result.environment(rev)}")
    for c in result.cells:
        if c.error:
            click.echo(f"{c.model} on {c.window}: {c.error}", err=True)
    written = _plot(root_of(ctx), result, name, plot_to)
    if written is not None:
        click.echo(f"plot: {written}")
    click.echo("recorded as experiments bt-<commit>-... (see `canon exp show`)")
    return 0 if all(not c.error for c in result.cells) else 1


def _plot(root: Path, result: Any, metric: str, out: Path | None) -> Path | None:
    """The matrix as a plot (None if no cell has a number); without matplotlib
    (``canon[plot]``), a note instead, unless a file was asked for."""
    import re

    from canon.errors import CanonError
    from canon.interfaces.cli.plots import plot_backtest

    values = {(c.model, c.window): c.metrics.get(metric) for c in result.cells if not c.error}
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", metric or "metric")
    path = out or root / ".canon" / "plots" / f"backtest-{safe}.png"
    try:
        return plot_backtest(result.models, result.windows, values, metric, path)
    except CanonError as exc:
        if out is not None:
            raise
        click.echo(f"note: no plot: {exc.message} ({exc.hint})", err=True)
        return None
