"""Exit codes by category, through the real ``canon`` CLI.

2: the user's request, declarations or workspace are wrong; 4: something outside
(a registry, a data source) answered badly or not at all; 0 with one line: nothing
declared, nothing to do. Each error is a message and a hint, never a traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import CANON

DECLARED = "project: t\ndata:\n  raw: {source: input.txt}\n"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CANON, *args], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "canon.yaml").write_text(DECLARED)
    (root / "input.txt").write_text("in\n")
    return root


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        # user mistakes: 2
        (["data", "status", "nosuch"], 2, 'unknown dataset "nosuch"'),
        (["data", "add", "raw", "input.txt"], 2, "data.raw is already declared"),
        (["data", "add", "bad:name", "input.txt"], 2, "is not a dataset name"),
        (["deploy", "nosuch"], 2, "unknown deployment nosuch"),
        (["deploy", "--status", "nosuch"], 2, "unknown deployment nosuch"),
        (["rollback", "nosuch"], 2, "unknown deployment nosuch"),
        (["pull-image", "x/y@md5:00"], 2, "not a sha256 digest"),
        (["apply", "nosuch"], 2, 'unknown stage "nosuch"'),
        # something outside did not answer, or lacks what was asked: 4
        (["pull-image", "127.0.0.1:{port}/ns/img:t"], 4, "failed: ConnectError"),
        (["data", "add", "gone", "file:///nonexistent-canon-test/d"], 4, "does not exist"),
    ],
)
def test_exit_code_by_category(project: Path, argv: list[str], code: int, message: str) -> None:
    port = str(_dead_port())
    before = (project / "canon.yaml").read_text()
    done = _run(project, *[a.replace("{port}", port) for a in argv])
    assert done.returncode == code, done.stdout + done.stderr
    assert f"error: {message}" in done.stderr or message in done.stderr.splitlines()[0]
    assert "\nhint: " in done.stderr
    assert "Traceback" not in done.stderr
    assert (project / "canon.yaml").read_text() == before  # a failed command changes nothing
    if "unknown deployment" in message:
        assert "hint: none is declared: add one under deployments: in canon.yaml" in done.stderr


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["deploy"], "No deployments declared (add one under deployments: in canon.yaml"),
        (["deploy", "--status"], "No deployments declared"),
        (["deploy", "--stop"], "No deployments declared"),
        (["images"], "No images declared (add a kind: base and a kind: model artifact"),
        (["push-image"], "No images declared"),
    ],
)
def test_nothing_declared_is_one_line_and_exit_0(project: Path, argv: list[str], line: str) -> None:
    done = _run(project, *argv)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(line) and done.stdout.count("\n") == 1
    assert done.stderr == ""


def test_declared_but_not_built_says_build_first(project: Path) -> None:
    (project / "canon.yaml").write_text(DECLARED + "artifacts:\n  base: {kind: base}\n")
    images = _run(project, "images")
    assert (images.returncode, images.stdout) == (0, "No images built yet (run `canon build`).\n")
    push = _run(project, "push-image")
    assert push.returncode == 0, push.stderr
    assert push.stdout == "No images built yet: nothing to push (run `canon build`).\n"


def test_deploy_status_json_with_nothing_declared_is_an_empty_list(project: Path) -> None:
    done = _run(project, "deploy", "--status", "--json")
    assert (done.returncode, done.stdout.strip()) == (0, "[]")


def test_pipeline_errors_name_stages_with_their_line_in_canon_yaml(project: Path) -> None:
    (project / "canon.yaml").write_text(
        "project: t\n"            # 1
        "stages:\n"               # 2
        "  a:\n"                  # 3
        "    cmd: ['true']\n"     # 4
        "    deps: [b.txt]\n"     # 5
        "    outs: [a.txt]\n"     # 6
        "  b:\n"                  # 7
        "    cmd: ['true']\n"     # 8
        "    deps: [a.txt]\n"     # 9
        "    outs: [b.txt]\n"     # 10
        "  c:\n"                  # 11
        "    cmd: ['true']\n"     # 12
        "    deps: [nope.txt]\n"  # 13
        "    outs: [a.txt]\n"     # 14
    )
    for argv in (["status"], ["apply"], ["dag"]):
        done = _run(project, *argv)
        assert done.returncode == 2, done.stdout + done.stderr
        err = done.stderr
        assert err.startswith("error: the pipeline in canon.yaml has 3 problems\n"), err
        assert 'stages "a" (canon.yaml:3) and "c" (canon.yaml:11) both write "a.txt"' in err
        assert 'stage "c" (canon.yaml:11) depends on "nope.txt", which does not exist' in err
        assert '"a" (canon.yaml:3) -> "b" (canon.yaml:7)' in err or \
            '"b" (canon.yaml:7) -> "a" (canon.yaml:3)' in err
        assert "\nhint: " in err and "Traceback" not in err
