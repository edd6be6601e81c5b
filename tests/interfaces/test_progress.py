"""Apply progress for a pipe (``canon exp run | ...``): the Console's lines without rich,
its style tags gone and everything else, brackets included, kept."""

from __future__ import annotations

import sys

import pytest

from canon.events import ApplyFinished, ApplyStarted, Notice, StageFinished, StageStarted
from canon.interfaces.cli.progress import Console, Plain, for_person


def test_plain_lines_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    out = Plain()
    out(ApplyStarted("local", ("prep", "train"), 2))
    out(StageStarted("train", "run", ("PARAMS_CHANGED train.lr: 0.1 -> [0.5]",)))
    out(StageFinished("prep", "up-to-date"))
    out(StageFinished("train", "ran", 1.5, 0, metrics={"loss": 0.123456, "acc": 0.9}))
    out(StageFinished("eval", "failed", 0.25, 3, message="exit 3\n[red] in the log"))
    out(Notice("canon.lock changed [/]"))
    out(ApplyFinished(False, 2.0, {"ran": 1, "failed": 1}))
    out.close()
    assert capsys.readouterr().out.splitlines() == [
        "canon apply: 2 change(s) planned, profile local",
        "run        train (PARAMS_CHANGED train.lr: 0.1 -> [0.5])",
        "up-to-date prep",
        "ran        train in 1.50s",
        "failed     eval in 0.25s",
        "            exit 3",
        "             in the log",  # a style tag in a message: rich would hide it too
        "note       canon.lock changed ",
        " stage  result       time  metrics",
        " prep   up-to-date",
        " train  ran         1.50s  acc=0.9  loss=0.1235",
        " eval   failed      0.25s",
        "failed in 2.00s (1 failed, 1 ran)",
    ]


def test_a_terminal_gets_the_rich_console_and_a_pipe_the_plain_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert type(for_person(live=True)) is Plain
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    console = for_person(live=False)
    assert type(console) is Console
    console.close()
