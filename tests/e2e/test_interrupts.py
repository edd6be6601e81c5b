"""SIGTERM / SIGINT to a real ``canon apply`` with a long stage running.

canon exits 128 + the signal (143, 130), kills the stage's whole process group,
releases the repo lock (the next apply takes it without "died without
finishing"), and the ledger records the apply as interrupted, with its profile.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Workspace

# the stage starts a grandchild in its process group, records both pids, then waits
LONG = (
    "import os, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
    "open('pids.tmp', 'w').write(f'{os.getpid()} {child.pid}')\n"
    "os.replace('pids.tmp', 'pids.txt')\n"
    "time.sleep(300)\n"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its reaper is dead
        return f.read().rpartition(")")[2].split()[0] != "Z"


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize(("signum", "code", "word"), [
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    (signal.SIGINT, 130, "interrupted"),
])
def test_signal_stops_stages_releases_the_lock_and_records_interrupted(
    ws: Workspace, signum: int, code: int, word: str
) -> None:
    ws.write({"long.py": LONG, "canon.yaml": (
        "project: t\nprofiles:\n  local: {}\n  big: {}\nstages:\n"
        f"  long:\n    cmd: [{sys.executable}, long.py]\n    deps: [long.py]\n    outs: [o]\n"
    )})
    proc = ws.popen("--profile", "big", "apply")
    _wait_for(ws.root / "pids.txt")
    stage, grandchild = map(int, ws.read("pids.txt").split())
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, out + err
    assert f"error: {word}; stopped 1 running stage(s)" in err
    assert "hint: finished stages are recorded" in err and "Traceback" not in err
    deadline = time.monotonic() + 10
    while (_alive(stage) or _alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(stage) and not _alive(grandchild)

    log = ws.canon("log", "--json")
    assert log.returncode == 0, log.stderr
    [entry] = json.loads(log.stdout)
    assert (entry["status"], entry["profile"]) == ("interrupted", "big")
    assert "interrupted  profile=big" in ws.canon("log").stdout

    again = ws.canon("--profile", "big", "plan")  # the lock is free, nobody died holding it
    assert again.returncode == 0, again.stderr
    (ws.root / "pids.txt").unlink()
    second = ws.popen("--profile", "big", "apply")
    _wait_for(ws.root / "pids.txt")
    second.send_signal(signal.SIGTERM)
    out2, err2 = second.communicate(timeout=60)
    assert second.returncode == 143 and "died without finishing" not in out2 + err2


def test_default_profile_is_recorded_by_name(ws: Workspace) -> None:
    ws.declare({"s": {"cmd": [sys.executable, "-c", "open('o', 'w').write('x')"], "outs": ["o"]}})
    assert ws.canon("apply").returncode == 0
    assert "succeeded  profile=default" in ws.canon("log").stdout


def test_sigterm_while_waiting_for_the_lock_exits_143_and_leaves_the_holder_alone(
    ws: Workspace,
) -> None:
    ws.write({"long.py": LONG, "canon.yaml": (
        f"project: t\nstages:\n  long:\n    cmd: [{sys.executable}, long.py]\n    outs: [o]\n"
    )})
    holder = ws.popen("apply")
    _wait_for(ws.root / "pids.txt")
    waiter = ws.popen("apply", "--wait", "120")
    time.sleep(1.0)  # it is waiting for the lock (nothing to show it but time)
    assert waiter.poll() is None
    waiter.send_signal(signal.SIGTERM)
    _, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 143, err
    assert err.strip().startswith("error: terminated (SIGTERM)\nhint: run it again"), err
    assert holder.poll() is None  # the holder's stage runs on
    holder.send_signal(signal.SIGTERM)
    holder.communicate(timeout=60)
    assert holder.returncode == 143
