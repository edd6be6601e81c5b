"""``canon backtest``: earlier commits' models, with their own code, on other data.

Each (model REV, window) pair is an experiment (``apply/experiments.py``)
started from REV itself: REV's code, REV's params and REV's data pins, with
only the window params overridden (``evaluate.test_from`` /
``evaluate.test_until`` by default, ``--window-params`` to name others). The
stages that make the model have the same keys as when REV was applied, so its
model is restored from the shared run cache, not retrained (it is REV's model,
bit for bit); only the stages reading the window run. Results are recorded as
experiments named ``bt-<rev>-<from>-<until>`` and returned as a models x
windows matrix of one metric.

``--data NAME[@REV]`` columns test on another pin of a dataset, or another
dataset of the same shape (``apply/backtest_data.py``): the model stage's
outputs are restored at REV and kept, the pin is swapped, and what reads the
data re-runs; named ``bt-<rev>-<slot>-<digest>``. With both, the columns are
every (data, window) pair.

Before the cells run, each model whose outputs the cache lacks is looked for
in the model image its commit recorded (``apply/modelimage.py``): files that
hash to the recorded digests are put into the cache, and the model stage
restores instead of re-running. Each model's line says how it was obtained:
from the cache, from its model image (with the image's digest), or rebuilt
from its commit (and why its image could not give it: not in
``.canon/images``), and whether its commit recorded an image (one built
before images existed did not).

``--env rebuild`` runs each model's cells in its commit's declared environment
(``environment: {python, requirements}``) rebuilt: a venv of the declared
Python with the commit's requirements lock installed (``executors/venv.py``,
kept under ``.canon/envs/`` by the lock's digest), built or reused once per
model before any cell runs; a declared Python this machine lacks fails the
back-test then. Such cells share the object cache but not the run cache (what
it holds under a stage's key may have run in another environment), and are
named ``...-env`` so that a cell recorded in the current environment is not
taken for one rebuilt, nor the other way round. A commit that pins no
requirements lock runs in the current environment, as with ``--env current``
(the default). Every cell records the environment it ran in (``environment``
in its experiment's info), and each model's line says it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from canon.apply.backtest_data import (
    DataChoice,
    choose_data,
    model_from,
    model_stage_of,
    slot_for,
    swap_in,
)
from canon.apply.experiments import ExperimentSpec, run_experiment
from canon.apply.modelimage import Primed, prime_from_image
from canon.errors import CanonError
from canon.events import Emit, Notice, discard
from canon.executors.local import sharing_cores
from canon.stores.exprefs import ExperimentError, ExperimentRefs, resolve_commit
from canon.stores.lockfile import parse_lock

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
    window: str  # the column's label: a window, a --data choice, or both
    experiment: str
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    obtained: str = ""  # how the model was obtained (cache / model image / rebuilt)
    environment: dict[str, Any] = field(default_factory=dict)  # what the cell ran in


@dataclass(frozen=True)
class Backtest:
    models: tuple[str, ...]
    windows: tuple[str, ...]  # column labels
    cells: tuple[Cell, ...]
    images: dict[str, dict[str, str]] = field(default_factory=dict)  # model -> image digests
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> used

    def environment(self, model: str) -> str:
        """The environment ``model``'s cells ran in, as the output says it."""
        used = self.environments.get(model) or {}
        return str(used.get("description") or "the current environment")

    def cell(self, model: str, window: str) -> Cell | None:
        return next((c for c in self.cells if c.model == model and c.window == window), None)

    def obtained(self, model: str) -> str:
        """How ``model`` was obtained, as the output says it."""
        how = sorted({c.obtained for c in self.cells if c.model == model and c.obtained})
        images = self.images.get(model) or {}
        if images:
            shown = ", ".join(f"{n} {d[:19]}" for n, d in sorted(images.items()))
            return f"image {shown} recorded; model files {' / '.join(how) or 'not obtained'}"
        return (
            "no image recorded at its commit (built before images, or none declared): "
            f"{' / '.join(how) or 'not obtained'}, with the commit's own code"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "windows": list(self.windows),
            "cells": [c.__dict__ for c in self.cells],
            "obtained": {m: self.obtained(m) for m in self.models},
            "environments": {m: self.environments.get(m) for m in self.models},
        }


@dataclass(frozen=True)
class Column:
    window: Window | None
    data: DataChoice | None

    @property
    def label(self) -> str:
        parts = [self.data.text if self.data else "", self.window.label if self.window else ""]
        return " ".join(p for p in parts if p)


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in text)


def _name(commit: str, column: Column, slot: str | None, rebuilt: bool = False) -> str:
    """The cell's experiment name; ``-env`` at the end when it runs in its commit's
    rebuilt environment (a cell recorded in the current one is another cell)."""
    parts = [f"bt-{commit[:8]}"]
    if column.data is not None:
        digest = str(column.data.record.content.digest).removeprefix("sha256:")
        parts.append(f"{_safe(slot or column.data.name)}-{digest[:8]}")
    if column.window is not None:
        parts.append(_safe(f"{column.window.start}-{column.window.end}"))
    suffix = "-env" if rebuilt else ""
    return "-".join(parts)[: 100 - len(suffix)] + suffix


def _obtained(info: dict[str, Any], model_stage: str) -> str:
    bt = info.get("backtest")
    bt = bt if isinstance(bt, dict) else {}
    if bt.get("model_from"):
        return str(bt["model_from"])
    status = (info.get("stages") or {}).get(model_stage)
    if status is None:
        return ""
    image = bt.get("model_image")
    return model_from(
        status == "ran", str(image) if image else None, bt.get("model_image_note", "")
    )


def _provenance(tree: Path, *, model_stage: str, primed: Primed) -> dict[str, Any]:
    """A window-only cell's ``prepare``: records where the model stage's outputs came
    from (the stage's status, known after the run, says whether they were used)."""
    return {"backtest": {"model_stage": model_stage, **primed.info()}}


def _with_environment(
    tree: Path, *, inner: Callable[[Path], Any] | None, environment: dict[str, Any]
) -> dict[str, Any]:
    """A cell's ``prepare``: ``inner``'s, and the environment the cell runs in."""
    extra = dict(inner(tree)) if inner is not None else {}
    return {**extra, "environment": environment}


def environment_of(
    root: Path, commit: str, rev: str, mode: str, profile: str | None, emit: Emit
) -> tuple[dict[str, Any], dict[str, str]]:
    """The environment ``rev``'s cells run in (as recorded) and what their stages'
    environment gets (``apply/environment.py``), its declaration read at ``commit``."""
    from canon.apply.environment import environment_for
    from canon.declare.project import EnvironmentSpec

    if mode == "current":
        used, stage_env = environment_for(root, root, EnvironmentSpec(None, None), rev, mode, emit)
        return used.to_dict(), stage_env
    from canon.apply.experiments import worktree
    from canon.declare.memo import load_project_memoised

    with worktree(root, commit, "bt-env", share=()) as tree:
        declared = load_project_memoised(tree, profile=profile).environment
        used, stage_env = environment_for(root, tree, declared, rev, mode, emit, commit)
    if not used.rebuilt:
        emit(Notice(f"{rev}: {used.description}"))
    return used.to_dict(), stage_env


def backtest(
    root: Any,
    models: Sequence[str],
    windows: Sequence[Window],
    *,
    data: Sequence[str] = (),
    window_params: tuple[str, str],
    profile: str | None,
    emit: Emit,
    jobs: int = 1,
    model_stage: str | None = None,
    env: str = "current",
) -> Backtest:
    if not models or not (windows or data):
        raise ExperimentError(
            "a back-test needs --model REV and --window START..END or --data NAME[@REV]",
            hint="e.g. canon backtest --model HEAD~2,HEAD --data weather@HEAD "
            "--window 2014-01-01..2014-12-31",
        )
    from canon.declare.memo import load_project_memoised

    # the lock keys pins by the profile's name: None means the project's default profile
    named = load_project_memoised(root, profile=profile).profile
    choices = [choose_data(root, d, named) for d in data]
    data_axis: list[DataChoice | None] = [*choices] or [None]
    window_axis: list[Window | None] = [*windows] or [None]
    columns = [Column(w, d) for d in data_axis for w in window_axis]
    refs = ExperimentRefs(root)
    existing = set(refs.names())
    work: list[tuple[str, Column, ExperimentSpec, Callable[[Path], Any] | None]] = []
    images: dict[str, dict[str, str]] = {}
    environments: dict[str, dict[str, Any]] = {}
    stage = model_stage or "train"
    for rev in models:
        commit = resolve_commit(root, rev)
        raw = refs.show_file(commit, "canon.lock")
        if raw is None:
            raise ExperimentError(
                f"{rev} has no canon.lock: its model was never recorded",
                hint="back-test commits whose canon.lock was committed after `canon apply`",
            )
        state = parse_lock(raw, f"{rev}:canon.lock").state(named)
        images[rev] = {n: str(i.digest) for n, i in state.images.items()}
        if choices:
            stage = model_stage_of(list(state.stages), model_stage, rev)
        # model files the cache lacks: from the model image the commit recorded, if it has them
        primed = prime_from_image(root, state, stage)
        # its environment: rebuilt (or reused) once, before any cell runs
        used, stage_env = environment_of(root, commit, rev, env, profile, emit)
        environments[rev] = used
        for column in columns:
            overrides = (
                {window_params[0]: column.window.start, window_params[1]: column.window.end}
                if column.window
                else {}
            )
            prepare = None
            if primed.info():
                prepare = partial(_provenance, model_stage=stage, primed=primed)
            slot = None
            if column.data is not None:
                slot = slot_for(column.data, state.data, rev)
                prepare = partial(
                    swap_in,
                    profile=profile,
                    model_stage=stage,
                    swaps={slot: column.data},
                    emit=discard,
                    primed=primed,
                    stage_env=stage_env,
                )
            prepare = partial(_with_environment, inner=prepare, environment=used)
            name = _name(commit, column, slot, rebuilt=used["rebuilt"])
            spec = ExperimentSpec(name, overrides, commit, profile, 1, stage_env=stage_env)
            work.append((rev, column, spec, prepare))

    def one(item: tuple[str, Column, ExperimentSpec, Callable[[Path], Any] | None]) -> Cell:
        rev, column, spec, prepare = item
        try:
            # recorded before (same commit, same column, same environment): reuse it
            if spec.name in existing:
                exp = refs.get(spec.name)
            else:
                exp = run_experiment(root, spec, emit, prepare)
            return Cell(
                rev,
                column.label,
                spec.name,
                dict(exp.metrics),
                obtained=_obtained(dict(exp.info), stage),
                environment=_environment_recorded(dict(exp.info)),
            )
        except CanonError as exc:
            return Cell(rev, column.label, spec.name, {}, exc.message)

    # parallel cells share the cores: each stage's numeric libraries get cores // N threads
    with sharing_cores(min(jobs, len(work))), ThreadPoolExecutor(max(1, jobs)) as pool:
        cells = tuple(pool.map(one, work))
    return Backtest(tuple(models), tuple(c.label for c in columns), cells, images, environments)


def _environment_recorded(info: dict[str, Any]) -> dict[str, Any]:
    """The environment a cell's experiment recorded; one recorded before environments
    were (``-env`` cells always record theirs) ran in the environment of its day."""
    found = info.get("environment")
    if isinstance(found, dict):
        return found
    return {"rebuilt": False, "description": "the current environment (not recorded)"}
