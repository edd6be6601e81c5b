"""executors/venv.py: a declared environment rebuilt as a venv, kept by its lock's digest."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from canon.errors import EnvironmentBuildError
from canon.executors import venv


@pytest.mark.parametrize(
    ("version", "declared", "ok"),
    [("3.11.9", "3.11", True), ("3.11.9", "3.11.9", True), ("3.11.9", "3.1", False),
     ("3.11.9", "3.11.8", False), ("3.11.9", "3", True)],
)
def test_a_version_matches_what_is_declared(version: str, declared: str, ok: bool) -> None:
    assert venv.matches(version, declared) is ok


def test_the_key_is_the_interpreter_and_the_lock_bytes() -> None:
    a = venv.key_of("3.11.9", b"six==1.16.0\n")
    assert a == venv.key_of("3.11.9", b"six==1.16.0\n")
    assert a != venv.key_of("3.11.9", b"six==1.17.0\n")
    assert a != venv.key_of("3.11.10", b"six==1.16.0\n")
    assert a != venv.key_of("3.11.9", None)


def test_a_venv_is_built_once_reused_and_a_half_built_one_is_built_again(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    built = venv.ensure(envs, None, None)
    assert not built.reused and built.python == platform.python_version()
    assert built.path.parent == envs and (built.path / venv.MARKER).is_file()
    python = built.stage_env()["PATH"].split(os.pathsep)[0] + "/python3"
    prefix = subprocess.run([python, "-c", "import sys; print(sys.prefix)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert prefix == str(built.path)

    again = venv.ensure(envs, None, None)
    assert again.reused and again.path == built.path

    (built.path / venv.MARKER).unlink()  # as if canon was killed before the marker
    (built.path / "leftover").write_text("half-built")
    rebuilt = venv.ensure(envs, None, None)
    assert not rebuilt.reused and not (rebuilt.path / "leftover").exists()


def test_a_python_that_is_not_here_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentBuildError, match=r"declares Python 2\.5, and no python2\.5"):
        venv.ensure(tmp_path, "2.5", None)
    assert not (tmp_path / "envs").exists() and list(tmp_path.iterdir()) == []


def _built_elsewhere(envs: Path) -> Path:
    """A venv built by another process, which has exited (its lock is free)."""
    code = ("import sys; from pathlib import Path; from canon.executors import venv; "
            "print(venv.ensure(Path(sys.argv[1]), None, None).path)")
    done = subprocess.run([sys.executable, "-c", code, str(envs)], capture_output=True,
                          text=True, check=True)
    return Path(done.stdout.strip())


def test_gc_removes_venvs_unused_lately_but_never_one_in_use(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    path = _built_elsewhere(envs)
    assert venv.remove_unused(envs, 3600) == []  # used just now
    old = time.time() - 7200
    os.utime(path / venv.MARKER, (old, old))
    assert venv.remove_unused(envs, 3600, dry_run=True) == [path] and path.is_dir()
    held = venv.ensure(envs, None, None)  # this process uses it (and it is recent again)
    assert held.path == path and held.reused
    os.utime(path / venv.MARKER, (old, old))
    assert venv.remove_unused(envs, 3600) == [] and path.is_dir()  # in use: kept
    other = _built_elsewhere(tmp_path / "other")
    os.utime(other / venv.MARKER, (old, old))
    assert venv.remove_unused(tmp_path / "other", 3600) == [other] and not other.exists()


def test_a_failed_build_leaves_nothing_and_says_what_pip_said(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    with pytest.raises(EnvironmentBuildError, match=r"six==0\.0\.0\.404") as info:
        venv.ensure(envs, None, b"six==0.0.0.404\n", label="requirements.lock")
    assert info.value.exit_code == 2 and "pinned and installable" in (info.value.hint or "")
    assert [p for p in envs.iterdir() if p.is_dir()] == []


def test_a_lock_with_relative_references_is_installed_from_its_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "reqs").mkdir(parents=True)
    (tree / "reqs" / "pins.txt").write_text("six==1.16.0\n")
    lock = b"-r pins.txt\n"
    (tree / "reqs" / "requirements.lock").write_bytes(lock)
    built = venv.ensure(tmp_path / "envs", None, lock, label="reqs/requirements.lock",
                        base=tree, commit="a" * 40)
    assert built.packages == ("six==1.16.0",)
    # its key depends on the commit (the included file is not in the lock's bytes) ...
    assert venv.key_of("3.11.9", lock, "a" * 40) != venv.key_of("3.11.9", lock, "b" * 40)
    # ... a self-contained lock's does not
    assert venv.key_of("3.11.9", b"six==1.16.0\n", "a" * 40) == venv.key_of(
        "3.11.9", b"six==1.16.0\n", "b" * 40)


def test_a_venv_in_use_by_another_process_is_reused_without_waiting(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    path = _built_elsewhere(envs)
    code = ("import sys, time; from pathlib import Path; from canon.executors import venv; "
            "venv.ensure(Path(sys.argv[1]), None, None); print('using', flush=True); "
            "time.sleep(120)")
    user = subprocess.Popen([sys.executable, "-c", code, str(envs)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert user.stdout is not None and user.stdout.readline().strip() == "using"
        done: list[venv.Venv] = []
        worker = threading.Thread(target=lambda: done.append(venv.ensure(envs, None, None)))
        worker.start()
        worker.join(timeout=60)  # a shared lock: not blocked by the other user's 120 s
        assert done and done[0].path == path and done[0].reused
        old = time.time() - 7200
        os.utime(path / venv.MARKER, (old, old))
        assert venv.remove_unused(envs, 3600) == []  # two users: gc keeps it
    finally:
        user.kill()
        user.wait()
