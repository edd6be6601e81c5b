"""executors/venv.py: a declared environment rebuilt as a venv, kept by its lock's digest."""

from __future__ import annotations

import os
import platform
import subprocess
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


def test_unused_lists_venvs_not_used_lately(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    built = venv.ensure(envs, None, None)
    assert venv.unused(envs, 3600) == []
    old = time.time() - 7200
    os.utime(built.path / venv.MARKER, (old, old))
    assert venv.unused(envs, 3600) == [built.path]
    venv.ensure(envs, None, None)  # using it again makes it recent
    assert venv.unused(envs, 3600) == []
