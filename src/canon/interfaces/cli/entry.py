"""The ``canon`` executable's first module: what can start before the CLI is imported.

``canon status`` and ``canon plan`` spend ~80 ms importing click and canon's core
before they look at the workspace. The walks of the workspace's big trees
(``observe.walk.begin_known``) need neither, so for these two commands they start
here, in a forked child, and overlap those imports; the walk joins the child later.
The garbage collector stays off for these two short, read-only commands (startup
allocates nothing cyclic worth collecting: ~5 ms), and what is alive at the end is
frozen so the interpreter's last collection has nothing to look at. Anything unusual
in the arguments, or any problem here, and the command simply starts as usual.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

EARLY = frozenset({"status", "plan"})
_WITH_VALUE = frozenset({"-p", "--profile"})
_FLAGS = frozenset({"-v", "--verbose"})


def main() -> Any:
    command, directory = command_of(sys.argv[1:])
    if command not in EARLY:
        from canon.interfaces.cli.main import main as cli

        return cli()
    gc.disable()
    _begin_walks(directory)
    from canon.interfaces.cli.main import main as cli

    try:
        return cli()
    finally:
        gc.freeze()


def command_of(args: list[str]) -> tuple[str | None, str | None]:
    """The subcommand and the ``-C`` directory, if the global options before it are
    ones this reads; ``(None, None)`` for anything else (``--help``, ``-C=x``...)."""
    directory = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-C" and i + 1 < len(args):
            directory, i = args[i + 1], i + 2
        elif arg in _WITH_VALUE and i + 1 < len(args):
            i += 2
        elif arg.startswith("--profile=") or arg in _FLAGS:
            i += 1
        elif arg.startswith("-"):
            return None, None
        else:
            return arg, directory
    return None, None


def _begin_walks(directory: str | None) -> None:
    from pathlib import Path

    try:
        from canon.observe.root import find_root
        from canon.observe.walk import begin_known

        begin_known(find_root(Path(directory) if directory else Path.cwd()))
    except Exception:  # a head start only: the command reports any problem itself
        return
