"""`canon exp queue start`'s view: lines on a pipe, a live table on a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from canon.apply.expqueue import ExperimentFinished, ExperimentProgress
from canon.events import Notice
from canon.interfaces.cli.queueview import QueueView


def _run(view: QueueView) -> None:
    view(Notice("running 2 queued experiment(s), 2 at a time"))
    view(ExperimentProgress("lr-1", "", "started"))
    view(ExperimentProgress("lr-1", "train", "running"))
    view(ExperimentProgress("lr-2", "", "started"))
    view(ExperimentProgress("lr-1", "train", "ran"))
    view(ExperimentFinished("lr-1", True, "0123456789abcdef", "", 1.25, {"acc": 0.91234, "n": 3}))
    view(ExperimentFinished("lr-2", False, None, "train: exit code 3 [see log]", 0.5))
    view.close()


def test_on_a_pipe_each_start_and_end_is_a_line() -> None:
    out = io.StringIO()
    view = QueueView([("lr-1", "train.lr=[0.1]"), ("lr-2", "train.lr=0.2")], live=False,
                     console=Console(file=out, width=200, highlight=False))
    _run(view)
    lines = out.getvalue().splitlines()
    assert lines[0] == "note running 2 queued experiment(s), 2 at a time"
    assert lines[1] == "started  lr-1  train.lr=[0.1]"  # brackets are text, not markup
    assert lines[3].split() == ["lr-1", "done", "0123456789ab", "1.25s", "acc=0.9123", "n=3"]
    assert lines[4].startswith("lr-2") and "FAILED  0.50s train: exit code 3 [see log]" in lines[4]
    assert lines[-1] == "1 done, 1 failed"


def test_on_a_terminal_a_live_table_then_the_summary_table() -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=True, color_system=None)
    view = QueueView([("lr-1", "train.lr=0.1"), ("lr-2", "train.lr=0.2"), ("lr-3", "x=1")],
                     live=True, console=console)
    assert view._live is not None
    view(ExperimentProgress("lr-1", "", "started"))
    view(ExperimentProgress("lr-1", "train", "running"))
    table = io.StringIO()
    Console(file=table, width=160, color_system=None).print(view._render())
    row = next(line for line in table.getvalue().splitlines() if "lr-1" in line)
    assert "running" in row and "train running" in row
    assert "1 queued" not in table.getvalue() and "2 queued" in table.getvalue()
    _run(view)
    final = out.getvalue()
    assert "lr-3" in final and "queued" in final  # never started: still shown
    assert "acc=0.9123" in final and "1 done, 1 failed" in final
