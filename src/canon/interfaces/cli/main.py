"""The ``canon`` command: a thin shell over the core.

Subcommands are imported only when invoked, so ``canon --help`` and
``canon status`` start fast. This is the one place that turns a CanonError
into a message, a hint and an exit code; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from canon import __version__
from canon.errors import CanonError

# name -> (module under canon.interfaces.cli.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "Create a canon project (optionally the bundled example)."),
    "status": ("status", "Say what is out of date and why (exit 1 when anything is)."),
    "plan": ("plan", "Show or save what `canon apply` would do, and why."),
    "apply": ("apply", "Run what must run, in parallel, cached by content."),
    "dag": ("dag", "Print the pipeline graph (text, mermaid or dot)."),
    "log": ("log", "Show the ledger of past applies and the stages they ran."),
    "schema": ("schema", "Print the JSON Schema of canon.yaml for editors."),
    "data": ("data", "Declared datasets: ls, status (drift), update (re-pin), add."),
    "build": ("build", "Build the declared images that are out of date (--check: compare)."),
    "images": ("images", "List the built images, their layers and sizes."),
    "push-image": ("push_image", "Push built images to a registry (only the missing blobs)."),
    "pull-image": ("pull_image", "Pull an image into .canon/images, verified; the pin wins."),
    "push": ("push", "Upload the objects canon.lock references that the remote lacks."),
    "fetch": ("fetch", "Download the objects canon.lock references into the cache (verified)."),
    "pull": ("pull", "Fetch, then restore the outputs and datasets missing from the workspace."),
    "cache": ("cache", "Inspect the local object cache (`canon cache verify [--repair]`)."),
    "serve": ("serve", "Serve a model over HTTP (/predict, /readyz, /provenance, /metrics)."),
    "deploy": ("deploy", "Roll deployments out to the pinned image (--status, --stop)."),
    "rollback": ("rollback", "Pin an earlier image for a deployment (a commit) and roll out."),
    "controller": ("controller", "Reconcile to a Git branch in a loop (poll + signed webhook)."),
    "gc": ("gc", "Remove objects no commit, ref or lock references (local cache or a remote)."),
    "exp": ("exp", "Experiments as Git refs: run (-S, sweeps, --queue), show, diff, promote."),
    "reproduce": ("reproduce", "Re-run a past commit's stages; compare digests and metrics."),
    "backtest": ("backtest", "Earlier commits' models, their own code, on other time windows."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(f"canon.interfaces.cli.commands.{entry[0]}")
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # list commands without importing them
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="canon")
@click.option(
    "-C",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run as if canon was started in DIR.",
)
@click.option(
    "--profile",
    "-p",
    default=None,
    envvar="CANON_PROFILE",
    help="Profile to apply (default: CANON_PROFILE, default_profile, or local).",
)
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and debug detail.")
@click.pass_context
def cli(ctx: click.Context, directory: Path | None, profile: str | None, verbose: bool) -> None:
    """canon: GitOps for machine learning.

    Declare code, environment, data, params and stages in canon.yaml; canon
    works out what differs from what was recorded in canon.lock, and why, and
    runs exactly that.
    """
    ctx.obj = {"cwd": directory or Path.cwd(), "profile": profile, "verbose": verbose}


# user:password@ in anything that looks like a URL or a registry reference: error
# text can quote what the user typed (a remote URL, an image reference), and
# credentials must never reach a terminal or a CI log (RELIABILITY.md, invariant 5).
_CREDENTIALS = re.compile(r"(?P<head>(?:[a-z][a-z0-9+.-]*://)?)[^\s/@:'\"]+:[^\s/@'\"]+@")


def _redacted(text: str) -> str:
    return _CREDENTIALS.sub(lambda m: f"{m.group('head')}***@", text)


def _show_error(err: CanonError, verbose: bool) -> None:
    if verbose:
        import traceback

        traceback.print_exc()
    lines = [f"error: {err.message}"]
    lines += [f"  {line}" for line in err.details()]
    if err.hint:
        lines.append(f"hint: {err.hint}")
    click.echo(_redacted("\n".join(lines)), err=True)


def _interrupted(exc: KeyboardInterrupt) -> None:
    signum = getattr(exc, "signum", 2)  # errors.Terminated: SIGTERM -> 143
    what = "terminated (SIGTERM)" if signum == 15 else "interrupted"
    click.echo(f"error: {what}", err=True)
    click.echo(
        "hint: run it again (canon writes atomically: nothing is left half-written)", err=True
    )
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args or "--verbose" in args or bool(os.environ.get("CANON_DEBUG"))
    try:
        code = cli.main(args=args, prog_name="canon", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except CanonError as err:
        _show_error(err, verbose)
        sys.exit(err.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(_redacted(f"error: {exc.format_message()}"), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        # click turns a KeyboardInterrupt (Ctrl-C, or errors.Terminated) into Abort
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _interrupted(exc.__cause__)
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as exc:
        # the machine said no (disk full, permissions, a file where a directory
        # should be): say what and where, without a traceback
        if verbose:
            import traceback

            traceback.print_exc()
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(_redacted(f"error: {exc.strerror or exc}{where}"), err=True)
        click.echo("hint: check the path's permissions and free space (--verbose: where)", err=True)
        sys.exit(2)
    except Exception as exc:  # a bug in canon, not the user's mistake
        if verbose:
            import traceback

            traceback.print_exc()
        click.echo(_redacted(f"error: internal error: {type(exc).__name__}: {exc}"), err=True)
        click.echo("hint: rerun with --verbose for the traceback, and report it", err=True)
        sys.exit(70)

if __name__ == "__main__":
    main()
