"""``canon backtest``: earlier commits' models, with their own code, on other time windows.

Each (model REV, window) pair is an experiment (``apply/experiments.py``)
started from REV itself: REV's code, REV's params and REV's data pins, with
only the window params overridden (``evaluate.test_from`` /
``evaluate.test_until`` by default, ``--window-params`` to name others). The
stages that make the model have the same keys as when REV was applied, so its
model is restored from the shared run cache, not retrained (it is REV's model,
bit for bit); only the stages reading the window run. Results are recorded as
experiments named ``bt-<rev>-<from>-<until>`` and returned as a models x
windows matrix of one metric.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from canon.apply.experiments import ExperimentSpec, run_experiment
from canon.errors import CanonError
from canon.events import Emit
from canon.stores.exprefs import ExperimentError, ExperimentRefs, resolve_commit

_DATE = re.compile(r"^[0-9A-Za-z:+\-]{1,32}$")


@dataclass(frozen=True)
class Window:
    start: str
    end: str

    @property
    def label(self) -> str:
        return f"{self.start}..{self.end}"


def parse_window(text: str) -> Window:
    start, sep, end = text.partition("..")
    if not sep or not _DATE.match(start) or not _DATE.match(end):
        raise ExperimentError(
            f"--window {text!r} is not START..END", hint="e.g. --window 2014-01-01..2014-12-31"
        )
    return Window(start, end)


@dataclass(frozen=True)
class Cell:
    model: str
    window: str
    experiment: str
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class Backtest:
    models: tuple[str, ...]
    windows: tuple[str, ...]
    cells: tuple[Cell, ...]

    def cell(self, model: str, window: str) -> Cell | None:
        return next((c for c in self.cells if c.model == model and c.window == window), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "windows": list(self.windows),
            "cells": [c.__dict__ for c in self.cells],
        }


def _name(commit: str, window: Window) -> str:
    safe = "".join(
        ch if ch.isalnum() or ch in "-" else "-" for ch in f"{window.start}-{window.end}"
    )
    return f"bt-{commit[:8]}-{safe}"


def backtest(
    root: Any,
    models: Sequence[str],
    windows: Sequence[Window],
    *,
    window_params: tuple[str, str],
    profile: str | None,
    emit: Emit,
    jobs: int = 1,
) -> Backtest:
    if not models or not windows:
        raise ExperimentError(
            "a back-test needs --model REV and --window START..END",
            hint="e.g. canon backtest --model HEAD~2,HEAD --window 2014-01-01..2014-12-31",
        )
    refs = ExperimentRefs(root)
    existing = set(refs.names())
    work: list[tuple[str, Window, ExperimentSpec]] = []
    for rev in models:
        commit = resolve_commit(root, rev)
        if refs.show_file(commit, "canon.lock") is None:
            raise ExperimentError(
                f"{rev} has no canon.lock: its model was never recorded",
                hint="back-test commits whose canon.lock was committed after `canon apply`",
            )
        for w in windows:
            overrides = {window_params[0]: w.start, window_params[1]: w.end}
            spec = ExperimentSpec(_name(commit, w), overrides, commit, profile, 1)
            work.append((rev, w, spec))

    def one(item: tuple[str, Window, ExperimentSpec]) -> Cell:
        rev, w, spec = item
        try:
            # recorded before (same commit, same window): reuse it
            exp = refs.get(spec.name) if spec.name in existing else run_experiment(root, spec, emit)
            return Cell(rev, w.label, spec.name, dict(exp.metrics))
        except CanonError as exc:
            return Cell(rev, w.label, spec.name, {}, exc.message)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        cells = tuple(pool.map(one, work))
    return Backtest(tuple(models), tuple(w.label for w in windows), cells)
