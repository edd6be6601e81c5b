"""`canon exp run` starts without the garbage collector (imports make no garbage) and
turns it back on at the apply's first event, so a long experiment's parent collects."""

from __future__ import annotations

import gc

from canon.events import Event, Notice
from canon.interfaces.cli.commands.exp import _collecting


def test_the_collector_is_back_on_once_the_apply_reports() -> None:
    seen: list[Event] = []
    was = gc.isenabled()
    gc.disable()
    try:
        forward = _collecting(seen.append)
        assert not gc.isenabled()
        forward(Notice("the apply started"))
        assert gc.isenabled()
        forward(Notice("and goes on"))
        assert seen == [Notice("the apply started"), Notice("and goes on")]
    finally:
        gc.unfreeze()
        if not was:
            gc.disable()
