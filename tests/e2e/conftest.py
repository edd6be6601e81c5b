"""End-to-end fixtures: generated workspaces driven through the real ``canon`` CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

CANON = shutil.which("canon", path=str(Path(sys.executable).parent)) or "canon"

# A generic stage program: concatenates its inputs (files, or every file of a
# directory) plus an optional salt into its output, and logs that it ran.
STEP = textwrap.dedent('''
    import os, pathlib, sys, time
    out, *ins = sys.argv[1:]
    sleep = float(os.environ.get("STEP_SLEEP", "0"))
    with open("ran.log", "a") as log:
        log.write(f"{os.environ['CANON_STAGE']} start {time.time()}\\n")
    time.sleep(sleep)
    data = b""
    for i in ins:
        p = pathlib.Path(i)
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            data += f.read_bytes()
    data += os.environ.get("SALT", "").encode()
    if os.environ.get("STEP_FAIL") == os.environ["CANON_STAGE"]:
        sys.exit(3)
    pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(out).write_bytes(data)
    with open("ran.log", "a") as log:
        log.write(f"{os.environ['CANON_STAGE']} end {time.time()}\\n")
''')


def step(out: str, *ins: str, **extra: object) -> dict[str, object]:
    """A stage declaration running STEP (argv, never a shell)."""
    return {"cmd": [sys.executable, "step.py", out, *ins], "deps": ["step.py", *ins],
            "outs": [out], **extra}


@dataclass
class Workspace:
    root: Path

    def write(self, files: dict[str, str | bytes]) -> None:
        for rel, content in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)

    def declare(self, stages: dict[str, object], **top: object) -> None:
        doc = {"project": "t", **top, "stages": stages}
        self.write({"canon.yaml": yaml.safe_dump(doc, sort_keys=False)})

    def canon(self, *args: str, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CANON, *args], cwd=self.root, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
        )

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        # As from an interactive shell: a suite started in the background (`make test &`)
        # runs with SIGINT ignored, and a child would inherit that (POSIX convention).
        return subprocess.Popen(
            [CANON, *args], cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "NO_COLOR": "1", **(env or {})},
            preexec_fn=_interactive_signals,
        )

    def ran(self) -> list[str]:
        log = self.root / "ran.log"
        if not log.exists():
            return []
        return [line.split()[0] for line in log.read_text().splitlines() if " end " in line]

    def reset_log(self) -> None:
        (self.root / "ran.log").unlink(missing_ok=True)

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text()


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    root = tmp_path / "proj"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    w = Workspace(root)
    w.write({"step.py": STEP, "params.yaml": "a: 1\nb: {x: 1, y: two}\n", "input.txt": "in\n",
             ".gitignore": ".canon/\nran.log\n"})
    yield w


def _interactive_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
