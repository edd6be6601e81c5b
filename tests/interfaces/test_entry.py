"""The executable's first module reads just enough of argv to start the walks early."""

from __future__ import annotations

import pytest

from canon.interfaces.cli.entry import command_of


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status"], ("status", None)),
        (["-C", "proj", "--profile", "cloud", "-v", "plan", "--json"], ("plan", "proj")),
        (["-p", "local", "status"], ("status", None)),
        (["--profile=cloud", "status", "train"], ("status", None)),
        (["apply"], ("apply", None)),
        (["--help"], (None, None)),
        (["-Cproj", "status"], (None, None)),  # a form this does not read: no head start
        (["-C"], (None, None)),
        ([], (None, None)),
    ],
)
def test_the_command_and_its_directory(
    argv: list[str], expected: tuple[str | None, str | None]
) -> None:
    assert command_of(argv) == expected
