"""The CLI's last line of defence: credentials redacted, no traceback for I/O trouble."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from canon.interfaces.cli.main import _redacted
from tests.e2e.conftest import CANON


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('no remote named "s3://u:supersecret123@b/x"', 'no remote named "s3://***@b/x"'),
        ("'u:supersecret123@127.0.0.1:9/ns/img:latest': bad", "'***@127.0.0.1:9/ns/img:latest': bad"),
        ("http://host:8080/path at 10:30", "http://host:8080/path at 10:30"),
        ("127.0.0.1:5000/ns/img@sha256:ab12", "127.0.0.1:5000/ns/img@sha256:ab12"),
    ],
)
def test_error_text_is_redacted(text: str, shown: str) -> None:
    assert _redacted(text) == shown


def test_unknown_remote_given_on_the_command_line_is_not_echoed(tmp_path: Path) -> None:
    (tmp_path / "canon.yaml").write_text("project: p\n")
    out = subprocess.run([CANON, "push", "-r", "s3://u:supersecret123@b/x"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "supersecret123" not in out.stdout + out.stderr


def test_an_os_error_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "canon.yaml").write_text(
        "project: p\nstages:\n  s:\n    cmd: [python3, -c, \"open('o','w').write('x')\"]\n    outs: [o]\n")
    (tmp_path / ".canon").mkdir()
    (tmp_path / ".canon" / "cache").write_text("not a directory")
    out = subprocess.run([CANON, "apply"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "cache" in out.stdout + out.stderr
