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


def test_a_dataset_being_pinned_shows_in_the_live_view_until_it_is_pinned() -> None:
    from rich.console import Console as RichConsole

    from canon.events import DatasetFetching, DatasetPinned

    out = Console(live=False)
    out.console = RichConsole(width=120, record=True, force_terminal=False)
    out(DatasetFetching("images", 1200, 48_000_000))
    out(DatasetFetching("images", 2400, 96_000_000))
    live = _text(out._render())
    assert "pinning data.images 2,400 file(s), 96.0 MB" in live
    out(DatasetPinned("images", "sha256:" + "a" * 64, 3000, 120_000_000))
    assert "pinning" not in _text(out._render())
    assert "pinned     data.images sha256:aaaaaaaaaaaa (3000 file(s), 120,000,000 bytes)" in (
        out.console.export_text()
    )


def _text(renderable: object) -> str:
    from rich.console import Console as RichConsole

    c = RichConsole(width=120, record=True, force_terminal=False)
    c.print(renderable)
    return c.export_text()
