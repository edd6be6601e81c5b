"""Fail points: named places where a test can make canon die on purpose.

``CANON_FAILPOINTS="lock.before_rename=kill,stage.after_run=kill:3"`` makes the
process SIGKILL itself at the named point (the third time it is reached, with
``:3``). Crash tests use this to cut canon at every write boundary and then
check that a rerun finishes with the invariants intact (RELIABILITY.md).
Without the variable a fail point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

_spec: dict[str, list[int]] | None = None


def _parse(text: str) -> dict[str, list[int]]:
    points: dict[str, list[int]] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, action = item.partition("=")
        _, _, nth = action.partition(":")
        points[name] = [int(nth) if nth else 1, 0]
    return points


def hit(name: str) -> None:
    global _spec
    if _spec is None:
        _spec = _parse(os.environ.get("CANON_FAILPOINTS", ""))
    point = _spec.get(name)
    if point is None:
        return
    point[1] += 1
    if point[1] == point[0]:
        os.kill(os.getpid(), signal.SIGKILL)
