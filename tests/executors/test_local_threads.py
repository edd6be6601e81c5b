"""Parallel experiments share the cores: while ``sharing_cores(N)`` is in effect, a stage
started by the local runner gets OMP_NUM_THREADS & co. = cores // N, unless the user set
them (their environment) or the stage did (its ``env:``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from canon.declare.project import StageSpec
from canon.executors.local import THREAD_VARS, LocalRunner, cores, sharing_cores, thread_caps

SHOW = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {THREAD_VARS!r}}}))"


def stage(env: dict[str, str] | None = None) -> StageSpec:
    return StageSpec(
        name="show",
        argv=(sys.executable, "-c", SHOW),
        env=tuple((env or {}).items()),
        deps=(),
        params=(),
        param_values=(),
        outs=(),
        metrics=(),
    )


def threads_seen(tmp_path: Path, spec: StageSpec) -> dict[str, str | None]:
    lines: list[str] = []
    run = LocalRunner(tmp_path / "run", tmp_path / "logs").run(spec, tmp_path, lines.append)
    assert run.exit_code == 0, run.tail
    seen: dict[str, str | None] = json.loads(lines[-1])
    return seen


@pytest.fixture(autouse=True)
def no_user_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in THREAD_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("parallel", "available", "expected"),
    [(1, 8, None), (2, 8, "4"), (3, 8, "2"), (4, 2, "1"), (2, 2, "1"), (2, 1, "1")],
)
def test_thread_caps_divide_the_cores(
    monkeypatch: pytest.MonkeyPatch, parallel: int, available: int, expected: str | None
) -> None:
    monkeypatch.setattr("canon.executors.local.cores", lambda: available)
    caps = thread_caps(parallel, environ={})
    assert caps == ({} if expected is None else dict.fromkeys(THREAD_VARS, expected))


def test_a_stage_gets_its_share_only_while_cores_are_shared(tmp_path: Path) -> None:
    share = str(max(1, cores() // 2))
    assert threads_seen(tmp_path, stage()) == dict.fromkeys(THREAD_VARS)  # alone: untouched
    with sharing_cores(2) as sharing:
        assert threads_seen(tmp_path, stage()) == dict.fromkeys(THREAD_VARS, share)
        sharing.update(1)  # the other experiment finished: the last one gets every core
        assert threads_seen(tmp_path, stage()) == dict.fromkeys(THREAD_VARS)
    with sharing_cores(2):
        pass
    assert threads_seen(tmp_path, stage()) == dict.fromkeys(THREAD_VARS)  # over: untouched


def test_the_users_and_the_stages_settings_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the user's environment
    with sharing_cores(64):  # more experiments than cores: at least one thread each
        seen = threads_seen(tmp_path, stage({"MKL_NUM_THREADS": "3"}))  # canon.yaml env:
    assert seen["OMP_NUM_THREADS"] == "7"
    assert seen["MKL_NUM_THREADS"] == "3"
    assert seen["OPENBLAS_NUM_THREADS"] == seen["NUMEXPR_NUM_THREADS"] == "1"
