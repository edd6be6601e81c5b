"""The forked pre-walk hands the content reader exactly what its own walk would see."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from canon.observe import prewalk
from canon.observe.content import ContentReader
from canon.observe.walk import walk
from canon.stores.statcache import StatCache


@pytest.fixture(autouse=True)
def fresh_module() -> Iterator[None]:
    prewalk._child, prewalk._results = None, None
    yield
    prewalk._child, prewalk._results = None, None


def project(tmp_path: Path, n: int = 50) -> Path:
    (tmp_path / "canon.yaml").write_text("project: t\n")
    for i in range(n):
        p = tmp_path / "data" / f"d{i % 5}" / f"f{i}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"%d" % i)
    (tmp_path / ".canon").mkdir()
    return tmp_path


def test_the_child_walk_equals_a_walk_here(tmp_path: Path) -> None:
    root = project(tmp_path)
    prewalk.remember(root / ".canon" / prewalk.HINTS, "data")
    prewalk.remember(root / ".canon" / prewalk.HINTS, "gone")  # a stale hint is harmless
    prewalk.start(["status"], cwd=str(root / "data"))  # found from a subdirectory
    assert prewalk._child is not None
    got = prewalk.take(root, "data")
    assert got is not None
    started, tree = got
    assert 0 < started <= time.time_ns()
    here = walk(root / "data", "data")
    assert tree == here and tree.nfiles == 50
    assert prewalk.take(root, "data") is None  # once
    assert prewalk.take(root, "gone") is None


@pytest.mark.parametrize("args", [["log"], ["status", "-C", "x"], []])
def test_only_observing_commands_fork(tmp_path: Path, args: list[str]) -> None:
    root = project(tmp_path)
    prewalk.remember(root / ".canon" / prewalk.HINTS, "data")
    prewalk.start(args, cwd=str(root))
    assert prewalk._child is None


def test_no_hints_no_fork_and_hints_are_kept_sane(tmp_path: Path) -> None:
    root = project(tmp_path)
    prewalk.start(["status"], cwd=str(root))
    assert prewalk._child is None
    hints = root / ".canon" / prewalk.HINTS
    for i in range(prewalk.MAX_HINTS + 5):
        prewalk.remember(hints, f"t{i}")
    prewalk.remember(hints, "t20")
    hints.write_text(hints.read_text() + "/etc\n../up\n")
    kept = prewalk._read_hints(hints)
    assert len(kept) == prewalk.MAX_HINTS and kept[-1] == "t20" and "/etc" not in kept


def test_a_big_tree_is_remembered_and_the_reader_uses_the_child_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prewalk, "MIN_FILES", 10)
    root = project(tmp_path)
    hints = root / ".canon" / prewalk.HINTS
    with StatCache(None) as cache:
        first = ContentReader(root, cache, hints).content("data")
    assert prewalk._read_hints(hints) == ["data"]
    prewalk.start(["status"], cwd=str(root))
    (root / "data" / "d1" / "f1").write_bytes(b"changed after the child's walk")
    seen: list[str] = []
    real_take = prewalk.take

    def spy(r: Path, rel: str) -> object:
        got = real_take(r, rel)
        seen.append(rel if got is not None else "-")
        return got

    monkeypatch.setattr(prewalk, "take", spy)
    with StatCache(None) as cache:
        again = ContentReader(root, cache, hints).content("data")
        assert seen == ["data"]
        # The reader trusted the child's listing (a snapshot from before the write)
        # but hashed the file as it is now: the digest it reports is of what it read.
        fresh = ContentReader(root, cache, hints).content("data")
    assert first is not None and again is not None and fresh is not None
    assert fresh.digest != first.digest


def test_status_through_the_cli_with_a_prewalk_reports_changes(tmp_path: Path) -> None:
    root = project(tmp_path, n=30)
    (root / "canon.yaml").write_text("project: t\ndata:\n  files:\n    source: data\n")
    env = {**os.environ}
    canon = [sys.executable, "-m", "canon.interfaces.cli.main"]
    for cmd in (["git", "init", "-q"],):
        subprocess.run(cmd, cwd=root, check=True)
    assert subprocess.run([*canon, "apply"], cwd=root, env=env).returncode == 0
    (root / ".canon" / prewalk.HINTS).write_text("data\n")
    clean = subprocess.run([*canon, "status"], cwd=root, env=env, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (root / "data" / "d2" / "f2").write_bytes(b"edited")
    dirty = subprocess.run([*canon, "status"], cwd=root, env=env, capture_output=True, text=True)
    assert "DATA_DRIFT" in dirty.stdout and "d2/f2" in dirty.stdout, dirty.stdout
