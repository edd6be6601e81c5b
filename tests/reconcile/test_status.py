"""The controller's status survives a restart: last applied commit, condition and
since when, and the commit that stalled (not run again by the new process)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from canon.errors import DeclarationError
from canon.events import Emit
from canon.reconcile.controller import STATUS_FILE, Condition, Controller, Options

GIT = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
                          env={**os.environ, **GIT})
    return done.stdout.strip()


@pytest.fixture
def repos(tmp_path: Path) -> tuple[Path, Path]:
    origin, dev, ctl = tmp_path / "origin.git", tmp_path / "dev", tmp_path / "ctl"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(tmp_path, "init", "-q", "-b", "main", str(dev))
    (dev / "canon.yaml").write_text("project: t\n")
    git(dev, "add", "canon.yaml")
    git(dev, "commit", "-qm", "one")
    git(dev, "push", "-q", str(origin), "HEAD:main")
    git(tmp_path, "clone", "-q", "-b", "main", str(origin), str(ctl))
    return dev, ctl


class Applies:
    def __init__(self, fail: bool = False) -> None:
        self.fail, self.calls = fail, 0

    def __call__(self, root: Path, profile: str | None, emit: Emit) -> None:
        self.calls += 1
        if self.fail:
            raise DeclarationError("canon.yaml has 1 problem: unknown artifact 'modle'")


def push(dev: Path, message: str) -> str:
    (dev / "canon.yaml").write_text(f"project: t\n# {message}\n")
    git(dev, "commit", "-qam", message)
    git(dev, "push", "-q", str(dev.parent / "origin.git"), "HEAD:main")
    return git(dev, "rev-parse", "HEAD")


def test_a_restarted_controller_knows_what_it_applied_and_what_stalled(
    repos: tuple[Path, Path],
) -> None:
    dev, ctl = repos
    clock = iter(range(1000, 2000, 10))
    first = Controller(ctl, Options(), lambda e: None, apply=Applies(), clock=lambda: next(clock))
    assert first.reconcile().condition is Condition.READY
    good = git(dev, "rev-parse", "HEAD")
    saved = json.loads((ctl / STATUS_FILE).read_text())
    assert saved["condition"] == "Ready" and saved["last_applied"] == good
    assert saved["since"] == 1000 and saved["stalled_on"] is None

    bad = push(dev, "broken")
    failing = Applies(fail=True)
    second = Controller(ctl, Options(), lambda e: None, apply=failing, clock=lambda: next(clock))
    assert second.status.last_applied == good  # read back from the file
    result = second.reconcile()
    assert (result.condition, result.reason) == (Condition.STALLED, "DeclarationError")
    assert failing.calls == 1

    third = Controller(ctl, Options(), lambda e: None, apply=failing, clock=lambda: next(clock))
    assert third.status.stalled_on == bad and third.status.since == 1010
    again = third.reconcile()
    assert (again.condition, again.reason) == (Condition.STALLED, "WaitingForGitChange")
    assert failing.calls == 1  # the stalled commit was not run again after the restart
    assert third.status.since == 1010  # still Stalled: the transition time stays

    fixed = push(dev, "fixed")
    works = Applies()
    fourth = Controller(ctl, Options(), lambda e: None, apply=works)
    assert fourth.reconcile().condition is Condition.READY
    saved = json.loads((ctl / STATUS_FILE).read_text())
    assert saved["last_applied"] == fixed and saved["stalled_on"] is None
    assert saved["reconciles"] == {"Ready": 2, "Stalled": 2}


@pytest.mark.parametrize("damage", [b"{not json", b'{"format": 1, "condition": "Maybe"}',
                                     b'{"format": 99}'])
def test_a_damaged_status_file_is_set_aside(repos: tuple[Path, Path], damage: bytes) -> None:
    _, ctl = repos
    path = ctl / STATUS_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(damage)
    c = Controller(ctl, Options(), lambda e: None, apply=Applies())
    assert c.status.last is None and c.status.last_applied is None
    assert path.with_name("status.json.damaged").read_bytes() == damage
    assert c.reconcile().condition is Condition.READY
    assert json.loads(path.read_text())["condition"] == "Ready"


class Flaky(Applies):
    """Fails while ``self.fail`` (a stage failing on something outside Git)."""

    def __call__(self, root: Path, profile: str | None, emit: Emit) -> None:
        from canon.errors import StageFailedError

        self.calls += 1
        if self.fail:
            raise StageFailedError("apply failed: train (the data source was down)")


def test_a_stalled_commit_is_tried_again_after_stalled_retry(repos: tuple[Path, Path]) -> None:
    dev, ctl = repos
    now = [5000.0]
    apply = Flaky(fail=True)
    c = Controller(ctl, Options(stalled_retry=600, interval=60, jitter=0), lambda e: None,
                   apply=apply, clock=lambda: now[0])
    first = c.reconcile()
    assert (first.condition, first.reason) == (Condition.STALLED, "StageFailedError")
    now[0] += 599
    waiting = c.reconcile()
    assert waiting.reason == "WaitingForGitChange" and apply.calls == 1
    assert "when it is tried again" in waiting.message
    assert c.next_wait(waiting) == pytest.approx(1.0)  # not later than the retry is due
    apply.fail = False  # the outside cause is gone
    now[0] += 1
    assert c.reconcile().condition is Condition.READY and apply.calls == 2
    saved = json.loads((ctl / STATUS_FILE).read_text())
    assert saved["stalled_on"] is None and saved["last_applied"] == git(dev, "rev-parse", "HEAD")


def test_with_stalled_retry_0_only_a_new_commit_is_tried(repos: tuple[Path, Path]) -> None:
    _, ctl = repos
    now = [5000.0]
    apply = Flaky(fail=True)
    c = Controller(ctl, Options(stalled_retry=0), lambda e: None, apply=apply,
                   clock=lambda: now[0])
    c.reconcile()
    now[0] += 10**6
    again = c.reconcile()
    assert again.reason == "WaitingForGitChange" and apply.calls == 1
    assert again.message.endswith("waiting for a new commit")
    restarted = Controller(ctl, Options(stalled_retry=600), lambda e: None, apply=apply,
                           clock=lambda: now[0])
    assert restarted.status.stalled_at == 5000.0  # kept across restarts
    assert restarted.reconcile().reason == "StageFailedError" and apply.calls == 2  # due long ago
