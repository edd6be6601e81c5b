"""``canon exp``: experiments as Git refs — run, queue, show, diff, plot, promote, remove."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from canon.interfaces.cli.commands._common import print_json, profile_of, root_of

if TYPE_CHECKING:
    from canon.events import Emit, Event


@click.group("exp", help="Experiments: runs with overridden params, recorded as Git refs.")
def command() -> None:
    pass


@command.command(
    "run",
    help="Run the pipeline with overridden params in its own worktree "
    "and record it on refs/canon/exps/NAME.",
)
@click.option(
    "-S",
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a param; range(a,b,step) or choice(x,y) sweep (several -S: grid).",
)
@click.option("-n", "--name", default=None, help="Experiment name (a sweep adds -1, -2, ...).")
@click.option("--queue", is_flag=True, help="Queue it for `canon exp queue start` instead.")
@click.option(
    "--max",
    "max_runs",
    type=click.IntRange(min=1),
    default=None,
    help="Refuse a sweep larger than N (with --random: sample N points).",
)
@click.option("--random", "random_", is_flag=True, help="Random search: sample --max points.")
@click.option("--seed", type=int, default=None, help="Seed of --random.")
@click.option(
    "--rev",
    default=None,
    help="Commit to start from [default: HEAD plus your uncommitted changes to tracked files].",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Stages at once within an experiment.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def run(
    ctx: click.Context,
    sets: tuple[str, ...],
    name: str | None,
    queue: bool,
    max_runs: int | None,
    random_: bool,
    seed: int | None,
    rev: str | None,
    jobs: int | None,
    as_json: bool,
) -> int:
    import gc

    # Imports make ~100k objects and no garbage: the collections they trigger, and the
    # interpreter's last one (which walks them all again), cost ~20 ms of an
    # experiment's ~0.15 s of its own. So no collection until the apply starts
    # (``_collecting``), and none at exit: objects are still freed by reference counts.
    gc.disable()
    try:
        return _run(ctx, sets, name, queue, max_runs, random_, seed, rev, jobs, as_json)
    finally:
        gc.freeze()


def _collecting(emit: Emit) -> Emit:
    """``emit``, turning the collector back on at the first event (the apply starts,
    the imports are done): a long experiment's parent collects as usual, never
    walking the imported objects again (frozen)."""
    import gc

    def forward(event: Event) -> None:
        if not gc.isenabled():
            gc.freeze()
            gc.enable()
        emit(event)

    return forward


def _run(
    ctx: click.Context,
    sets: tuple[str, ...],
    name: str | None,
    queue: bool,
    max_runs: int | None,
    random_: bool,
    seed: int | None,
    rev: str | None,
    jobs: int | None,
    as_json: bool,
) -> int:
    from canon.apply.experiments import plan_experiments, run_experiment
    from canon.declare.overrides import expand, parse_set

    root = root_of(ctx)
    grid = expand([parse_set(s) for s in sets], max_runs=max_runs, random=random_, seed=seed)
    specs = plan_experiments(
        root, grid, name=name, base=rev, profile=profile_of(ctx), jobs=jobs or os.cpu_count() or 1
    )
    if specs and specs[0].workspace:
        files = specs[0].workspace.get("files") or []
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        click.echo(
            f"including uncommitted changes to {shown} (snapshot {specs[0].base[:12]} on top "
            f"of HEAD; your branch is not moved)",
            err=True,
        )
    if queue:
        from canon.apply.expqueue import ExperimentQueue

        ExperimentQueue(root).add(specs)
        for spec in specs:
            click.echo(f"queued {spec.name}  {_overrides(spec.overrides)}")
        click.echo("start them with `canon exp queue start -j N`")
        return 0
    from canon.interfaces.cli.progress import JsonLines, for_person

    emit = JsonLines() if as_json else for_person(live=True)
    try:
        for spec in specs:
            exp = run_experiment(root, spec, _collecting(emit))
            if not as_json:
                metrics = "  ".join(f"{k}={_fmt(v)}" for k, v in list(exp.metrics.items())[:4])
                click.echo(f"{exp.name}  {exp.commit[:12]}  {metrics}")
    finally:
        emit.close()
    return 0


def _overrides(overrides: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in overrides.items())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


@command.group("queue", help="The experiment queue: start workers, see what is left.")
def queue_group() -> None:
    pass


@queue_group.command("start", help="Run every queued experiment, N at a time.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--executor",
    default=None,
    metavar="dask://HOST:PORT",
    help="Run them on a Dask distributed cluster instead of local workers.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queue_start(ctx: click.Context, jobs: int, executor: str | None, as_json: bool) -> int:
    from canon.apply.expqueue import ExperimentQueue

    queue = ExperimentQueue(root_of(ctx))
    emit: Any
    if as_json:
        from canon.interfaces.cli.progress import JsonLines

        emit = JsonLines()
    else:
        from canon.interfaces.cli.queueview import QueueView

        waiting = [e for e in queue.entries() if e.state in ("queued", "running")]
        emit = QueueView(((e.spec.name, _overrides(e.spec.overrides)) for e in waiting), live=True)
    try:
        results = queue.start(jobs=jobs, emit=emit, executor=executor)
    finally:
        emit.close()
    if not results and not as_json:
        click.echo("The queue is empty.")
    return 0 if all(r.ok for r in results) else 1


@queue_group.command("status", help="Queued, running, done and failed experiments.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def queue_status(ctx: click.Context, as_json: bool) -> int:
    from canon.apply.expqueue import ExperimentQueue

    entries = ExperimentQueue(root_of(ctx)).entries()
    if as_json:
        print_json([{"state": e.state, **e.spec.to_dict(), "message": e.message} for e in entries])
        return 0
    if not entries:
        click.echo("The queue is empty.")
    for e in entries:
        click.echo(
            f"{e.state:<8} {e.spec.name:<32} {_overrides(e.spec.overrides)}"
            + (f"  {e.message}" if e.message else "")
        )
    return 0


@queue_group.command("clear", help="Forget finished entries (--queued: also drop waiting ones).")
@click.option("--queued", is_flag=True, help="Also drop experiments still waiting to run.")
@click.pass_context
def queue_clear(ctx: click.Context, queued: bool) -> int:
    from canon.apply.expqueue import ExperimentQueue

    states = ("done", "failed", "queued") if queued else ("done", "failed")
    n = ExperimentQueue(root_of(ctx)).clear(states)
    click.echo(f"cleared {n} queue entr{'y' if n == 1 else 'ies'} (experiments' refs are kept)")
    return 0


@command.command("show", help="A table of experiments with their params and metrics.")
@click.option("--sort", default=None, metavar="KEY", help="Sort by a metric or param.")
@click.option("--desc", is_flag=True, help="Sort descending.")
@click.option("--where", default=None, metavar="EXPR", help="e.g. 'train.C<0.5 and auc>0.7'.")
@click.option("--all-params", is_flag=True, help="Show every param, not only those that vary.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True)
@click.pass_context
def show(
    ctx: click.Context,
    sort: str | None,
    desc: bool,
    where: str | None,
    all_params: bool,
    as_json: bool,
    as_csv: bool,
) -> int:
    from canon.stores.expquery import columns, select
    from canon.stores.exprefs import ExperimentRefs

    exps = select(ExperimentRefs(root_of(ctx)).list(), where=where, sort=sort, desc=desc)
    if as_json:
        print_json([e.to_dict() for e in exps])
        return 0
    params, metrics = columns(exps, all_params=all_params)
    header = ["name", "commit", *params, *metrics]
    dirty = {e.name for e in exps if e.info.get("workspace")}
    rows = [
        [
            e.name + ("*" if e.name in dirty and not as_csv else ""),
            e.commit[:10],
            *(_fmt(e.params.get(k)) for k in params),
            *(_fmt(e.metrics.get(k)) for k in metrics),
        ]
        for e in exps
    ]
    if as_csv:
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
        sys.stdout.write(out.getvalue())
        return 0
    if not exps:
        click.echo("No experiments." if not where else "No experiment matches.")
        return 0
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if dirty:
        click.echo("* includes uncommitted workspace changes (a snapshot commit on top of HEAD)")
    return 0


@command.command("diff", help="Params, metrics, stages and outputs that differ between A and B.")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def diff_cmd(ctx: click.Context, a: str, b: str, as_json: bool) -> int:
    from canon.stores.expquery import diff
    from canon.stores.exprefs import ExperimentRefs

    refs = ExperimentRefs(root_of(ctx))
    ea, eb = refs.get(a), refs.get(b)
    d = diff(
        ea,
        eb,
        _outputs(refs, ea.commit, ea.info.get("profile")),
        _outputs(refs, eb.commit, eb.info.get("profile")),
    )
    if as_json:
        print_json(d.to_dict())
        return 0
    for title, items in (
        ("params", d.params),
        ("metrics", d.metrics),
        ("stages (key)", d.stages),
        ("outputs", d.outputs),
    ):
        if items:
            click.echo(f"{title}:")
            for k, (va, vb) in items.items():
                click.echo(f"  {k:<30} {_fmt(va)} -> {_fmt(vb)}")
    if not any((d.params, d.metrics, d.stages, d.outputs)):
        click.echo(f"{a} and {b} do not differ.")
    return 0


def _outputs(refs: Any, commit: str, profile: Any) -> dict[str, str]:
    from canon.errors import CanonError
    from canon.stores.lockfile import parse_lock

    raw = refs.show_file(commit, "canon.lock")
    if raw is None:
        return {}
    try:
        state = parse_lock(raw).state(profile if isinstance(profile, str) else None)
    except CanonError:
        return {}
    return {p: str(c.digest)[7:19] for s in state.stages.values() for p, c in s.outs.items()}


@command.command("remove", help="Delete experiments (their refs).")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every experiment.")
@click.pass_context
def remove(ctx: click.Context, names: tuple[str, ...], all_: bool) -> int:
    from canon.stores.exprefs import ExperimentRefs

    refs = ExperimentRefs(root_of(ctx))
    if not names and not all_:
        raise click.UsageError("name experiments to remove, or --all")
    removed = refs.remove(refs.names() if all_ else list(names))
    click.echo(
        f"removed {len(removed)} experiment(s); `canon gc` frees the outputs "
        "no other commit or experiment needs"
    )
    return 0


@command.command(
    "promote",
    help="Make experiment NAME a normal commit on the current branch "
    "(its params file and canon.lock).",
)
@click.argument("name")
@click.option("-m", "--message", default=None)
@click.pass_context
def promote(ctx: click.Context, name: str, message: str | None) -> int:
    from canon.apply.promote import promote as do_promote

    commit = do_promote(root_of(ctx), name, message)
    click.echo(
        f"promoted {name} as {commit[:12]} on the current branch; "
        "`canon apply` restores its outputs from the cache (nothing re-runs)"
    )
    return 0


@command.command("plot", help="Plot METRIC for every experiment (against --x PARAM).")
@click.argument("metric")
@click.option("--x", "x_key", default=None, metavar="PARAM", help="Param on the x axis.")
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write it (.png, .svg or .html); default .canon/plots/METRIC.png.",
)
@click.option("--where", default=None, metavar="EXPR")
@click.pass_context
def plot(
    ctx: click.Context, metric: str, x_key: str | None, out: Path | None, where: str | None
) -> int:
    from canon.interfaces.cli.plots import plot_metric
    from canon.stores.expquery import select
    from canon.stores.exprefs import ExperimentRefs

    root = root_of(ctx)
    exps = select(ExperimentRefs(root).list(), where=where, sort=x_key)
    path = plot_metric(exps, metric, x_key, out or root / ".canon" / "plots" / f"{metric}.png")
    click.echo(str(path.resolve()))
    return 0


def _sharing() -> None:
    from canon.interfaces.cli.commands.exp_sync import pull, push

    command.add_command(push)
    command.add_command(pull)


_sharing()
