"""The experiment worktree: ``git worktree add`` survives a concurrent ``remove`` that
deleted ``.git/worktrees`` under it (parallel queue workers hit this)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from canon.apply import experiments
from canon.errors import CanonError


def repo(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        cwd=root,
        check=True,
    )
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()
    return root, head


def test_worktree_add_is_retried_when_git_cannot_create_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, head = repo(tmp_path)
    blocker = root / ".git" / "worktrees"
    blocker.write_text("")  # git: "could not create leading directories of .git/worktrees/…"
    waits: list[float] = []

    def wait(seconds: float) -> None:  # between attempts: the other worker is done
        waits.append(seconds)
        blocker.unlink()

    monkeypatch.setattr(experiments, "_backoff", wait)
    experiments._add_worktree(root, tmp_path / "wt", head)
    assert len(waits) == 1 and (tmp_path / "wt" / ".git").is_file()


def test_worktree_add_gives_up_with_gits_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, head = repo(tmp_path)
    (root / ".git" / "worktrees").write_text("")
    monkeypatch.setattr(experiments, "_backoff", lambda seconds: None)
    with pytest.raises(CanonError, match=r"git worktree failed: .*could not create"):
        experiments._add_worktree(root, tmp_path / "wt", head, attempts=3)
    with pytest.raises(CanonError, match="invalid reference"):  # other failures: at once
        experiments._add_worktree(root, tmp_path / "wt2", "0" * 40)
