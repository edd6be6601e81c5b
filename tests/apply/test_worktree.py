"""The experiment worktree: ``git worktree add`` survives a concurrent ``remove`` that
deleted ``.git/worktrees`` under it (parallel queue workers hit this)."""

from __future__ import annotations

import os
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


def records(root: Path) -> list[str]:
    listing = subprocess.run(
        ["git", "worktree", "list", "--porcelain"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in listing.splitlines() if line.startswith("worktree ")]


def test_the_worktree_and_its_record_are_removed_without_git(tmp_path: Path) -> None:
    root, head = repo(tmp_path)
    with experiments.worktree(root, head, "x") as tree:
        assert (tree / ".git").is_file() and len(records(root)) == 2
        victim = tmp_path / "victim" / "worktrees" / "x"
        victim.mkdir(parents=True)
        (tree / ".git").write_text(f"gitdir: {victim}\n")  # a stage rewrote it: ignored
    assert not tree.exists() and records(root) == [f"worktree {root}"]
    assert victim.is_dir()  # what the stage pointed at is left alone


def test_meanwhile_runs_during_the_checkout_and_its_error_removes_the_worktree(
    tmp_path: Path,
) -> None:
    root, head = repo(tmp_path)
    seen: list[Path] = []

    def meanwhile(path: Path) -> None:
        seen.append(path)
        raise CanonError("the name is taken")

    with (
        pytest.raises(CanonError, match="the name is taken"),
        experiments.worktree(root, head, "x", meanwhile=meanwhile),
    ):
        pytest.fail("the body must not run")
    assert len(seen) == 1 and seen[0].parent == root / experiments.WORKTREES
    assert records(root) == [f"worktree {root}"] and not seen[0].exists()
    assert not any((root / experiments.WORKTREES).iterdir())


def test_the_record_is_removed_only_when_it_names_the_worktree_back(tmp_path: Path) -> None:
    root, head = repo(tmp_path)
    wt = tmp_path / "wt"
    subprocess.run(
        ["git", "worktree", "add", "-q", "--detach", str(wt), head], cwd=root, check=True
    )
    admin = experiments._admin_dir(wt)
    assert admin is not None and admin.parent == root / ".git" / "worktrees"
    other = tmp_path / "other" / "worktrees" / "wt"
    other.mkdir(parents=True)
    (other / "gitdir").write_text(str(tmp_path / "elsewhere" / ".git") + "\n")
    (wt / ".git").write_text(f"gitdir: {other}\n")  # a record that is not this worktree's
    assert experiments._admin_dir(wt) is None
    (wt / ".git").write_text("not a worktree\n")
    assert experiments._admin_dir(wt) is None


def test_prune_drops_what_a_killed_run_left_a_checkout_and_a_private_index(
    tmp_path: Path,
) -> None:
    root, _ = repo(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has any more
    left = root / experiments.WORKTREES
    left.mkdir(parents=True)
    (left / f"x-{gone.pid}-0a1b2c3d").mkdir()
    (left / f"x-{gone.pid}-0a1b2c3d.index").write_bytes(b"DIRC")
    (left / f"y-{os.getpid()}-0a1b2c3d.index").write_bytes(b"DIRC")  # a live run's: kept
    experiments.prune_worktrees(root)
    assert sorted(p.name for p in left.iterdir()) == [f"y-{os.getpid()}-0a1b2c3d.index"]


def test_worktrees_made_and_removed_in_parallel_never_trip_each_other(tmp_path: Path) -> None:
    """A removal takes its record out of .git/worktrees/ in one rename, so a parallel
    `git worktree add` (which reads every record there) never meets a half-deleted one."""
    from concurrent.futures import ThreadPoolExecutor

    root, head = repo(tmp_path)

    def cycle(n: int) -> None:
        for i in range(6):
            with experiments.worktree(root, head, f"w{n}-{i}") as tree:
                assert (tree / ".git").is_file()

    with ThreadPoolExecutor(4) as pool:
        for f in [pool.submit(cycle, n) for n in range(4)]:
            f.result()
    assert not (root / ".git" / "worktrees").exists() or not any(
        (root / ".git" / "worktrees").iterdir()
    )
    assert not list((root / ".git").glob("canon-removed-*"))
