"""Crash tests: SIGKILL ``canon apply`` at write boundaries and at random moments;
afterwards the lock, the cache and the ledger are intact and a rerun finishes."""

from __future__ import annotations

import hashlib
import random
import signal
import sqlite3
import time

import pytest

from canon.stores.lockfile import read_lock
from tests.e2e.conftest import Workspace, step

DIAMOND = {
    "a": step("build/a.txt", "input.txt", params=["a"], env={"SALT": "${params.a}"}),
    "b": step("build/b.txt", "build/a.txt", env={"STEP_SLEEP": "0.2"}),
    "c": step("build/c/out.txt", "build/a.txt", env={"STEP_SLEEP": "0.2"}),
    "d": step("build/d.txt", "build/b.txt", "build/c"),
}
EXPECTED_D = "in\n{a}in\n{a}"


def check_invariants(ws: Workspace) -> None:
    state = ws.root / ".canon"
    # 1. objects are what their digest says (temp files are never under a final name)
    cache = state / "cache"
    if cache.exists():
        for obj in cache.rglob("*"):
            if obj.is_file() and len(obj.parent.name) == 2 and len(obj.name) == 62:
                assert hashlib.sha256(obj.read_bytes()).hexdigest() == obj.parent.name + obj.name
    # 2. the lock is old or new, never torn; every output it records is in the cache
    lock = read_lock(ws.root)
    for profile in lock.profiles.values():
        for record in profile.stages.values():
            for content in record.outs.values():
                hexd = content.digest[7:]
                assert (cache / "sha256" / hexd[:2] / hexd[2:]).is_file(), content
    # 3. the ledger is a sound database
    ledger = state / "ledger.db"
    if ledger.exists():
        with sqlite3.connect(ledger) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def finish_and_check(ws: Workspace, a: int) -> None:
    rerun = ws.canon("apply", "-j", "2")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    check_invariants(ws)
    assert ws.canon("status").returncode == 0
    assert ws.read("build/d.txt") == EXPECTED_D.format(a=a)


@pytest.mark.parametrize(
    ("point", "nth"),
    [
        ("objects.before_rename", 1),
        ("objects.before_rename", 3),
        ("atomic.before_rename", 1),
        ("atomic.before_rename", 4),
        ("lock.before_write", 2),
        ("stage.after_run", 1),
        ("stage.after_run", 3),
        ("ledger.before_append", 2),
    ],
)
def test_kill_at_write_boundary(ws: Workspace, point: str, nth: int) -> None:
    ws.declare(DIAMOND)
    killed = ws.canon("apply", "-j", "2", env={"CANON_FAILPOINTS": f"{point}={nth}"})
    assert killed.returncode == -signal.SIGKILL, (point, killed.stdout, killed.stderr)
    check_invariants(ws)
    finish_and_check(ws, 1)


def test_sigkill_at_random_moments(ws: Workspace) -> None:
    ws.declare(DIAMOND)
    rng = random.Random(20261127)
    for i in range(10):
        ws.write({"params.yaml": f"a: {i}\n"})
        proc = ws.popen("apply", "-j", "2")
        time.sleep(rng.uniform(0.0, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check_invariants(ws)
    finish_and_check(ws, 9)
