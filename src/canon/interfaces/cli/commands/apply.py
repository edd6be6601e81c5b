"""``canon apply``: run what must run, in dependency order, in parallel."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType

import click

from canon.errors import Terminated
from canon.interfaces.cli.commands._common import profile_of, root_of


def _interrupt_on_term(signum: int, frame: FrameType | None) -> None:
    # unwind once, like Ctrl-C: stages are stopped, the lock released, the apply
    # recorded as interrupted; a second SIGTERM must not cut that cleanup short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated(signum)


@click.command(
    "apply",
    help="Run what must run, in parallel, cached by content.\n\n"
    "ARGS are stage names, or one saved plan file from `canon plan --out`.",
)
@click.argument("args", nargs=-1)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Stages to run at once (default: number of CPUs).",
)
@click.option(
    "-k", "--keep-going", is_flag=True, help="Go on with independent stages after a failure."
)
@click.option("-f", "--force", is_flag=True, help="Run the targets even if they are up to date.")
@click.option(
    "--wait",
    type=float,
    default=0.0,
    metavar="SECONDS",
    help="Wait this long for another apply to finish instead of failing.",
)
@click.option(
    "--executor",
    default=None,
    metavar="dask://HOST:PORT",
    help="Run the stages on a Dask distributed cluster (default: local processes).",
)
@click.option("--json", "as_json", is_flag=True, help="Emit events as JSON lines.")
@click.pass_context
def command(
    ctx: click.Context,
    args: tuple[str, ...],
    jobs: int | None,
    keep_going: bool,
    force: bool,
    wait: float,
    executor: str | None,
    as_json: bool,
) -> int:
    from canon.apply.applier import ApplyOptions
    from canon.apply.session import run_apply
    from canon.interfaces.cli.progress import Console, JsonLines

    root = root_of(ctx)
    plan_file: Path | None = None
    targets = list(args)
    if targets and (targets[0].endswith(".json") or (Path(targets[0]).is_file())):
        plan_file = Path(targets.pop(0))
        if targets:
            raise click.UsageError("give either a plan file or targets, not both")
    options = ApplyOptions(jobs=jobs or os.cpu_count() or 1, keep_going=keep_going, force=force)
    emit = JsonLines() if as_json else Console(live=True)
    signal.signal(signal.SIGTERM, _interrupt_on_term)
    try:
        result = run_apply(
            root,
            profile=profile_of(ctx),
            targets=targets,
            options=options,
            plan_file=plan_file,
            emit=emit,
            argv=["canon", *sys.argv[1:]],
            wait=wait,
            executor=executor,
        )
    finally:
        emit.close()
    return 0 if result.ok else 1
