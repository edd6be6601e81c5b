"""``canon exp push`` / ``canon exp pull``: see ``canon.apply.expsync``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from canon.interfaces.cli.commands._common import profile_of, root_of
from canon.interfaces.cli.commands._transfer import close, make_emit

F = Callable[..., Any]


def _options(fn: F) -> F:
    fn = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(fn)
    fn = click.option("-j", "--jobs", type=click.IntRange(1, 256), default=None)(fn)
    fn = click.option(
        "-f", "--force", is_flag=True, help="Overwrite an experiment of the same name."
    )(fn)
    fn = click.option(
        "-r",
        "--remote",
        default=None,
        metavar="NAME",
        help="The data remote for the outputs (default: the profile's).",
    )(fn)
    fn = click.option("--all", "every", is_flag=True, help="Every experiment.")(fn)
    fn = click.argument("names", nargs=-1)(fn)
    return click.argument("git_remote")(fn)


@click.command(
    "push",
    help="Share experiments: their outputs to the data remote, then their refs to "
    "GIT_REMOTE (git push refs/canon/exps/NAME).",
)
@_options
@click.pass_context
def push(ctx: click.Context, /, **kw: Any) -> int:
    from canon.apply.expsync import push_experiments

    return _run(ctx, push_experiments, "pushed", "to", **kw)


@click.command(
    "pull",
    help="Fetch experiments' refs from GIT_REMOTE, then their outputs from the data remote "
    "into the cache (`canon exp promote NAME` + `canon apply` then runs nothing).",
)
@_options
@click.pass_context
def pull(ctx: click.Context, /, **kw: Any) -> int:
    from canon.apply.expsync import pull_experiments

    return _run(ctx, pull_experiments, "pulled", "from", **kw)


def _run(
    ctx: click.Context,
    flow: Any,
    verb: str,
    where: str,
    *,
    git_remote: str,
    names: tuple[str, ...],
    every: bool,
    remote: str | None,
    force: bool,
    jobs: int | None,
    as_json: bool,
) -> int:
    from canon.urls import redact

    shown_remote = redact(git_remote)  # a URL may carry a token: never printed
    emit = make_emit(as_json)
    try:
        result = flow(
            root_of(ctx),
            git_remote,
            names,
            every=every,
            remote=remote,
            profile=profile_of(ctx),
            force=force,
            jobs=jobs,
            emit=emit,
        )
    finally:
        close(emit)
    if as_json:  # after the JSON-lines events: the result, as the last line
        click.echo(
            json.dumps(
                {
                    "experiments": result.names,
                    "git_remote": shown_remote,
                    "remote": result.remote,
                    "objects": result.objects,
                    "size": result.size,
                }
            )
        )
        return 0
    shown = ", ".join(result.names) or "none (already up to date)"
    click.echo(f"{verb} {len(result.names)} experiment(s) {where} {shown_remote}: {shown}")
    return 0
