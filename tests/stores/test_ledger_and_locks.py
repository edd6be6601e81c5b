from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from canon.digest import hash_bytes
from canon.errors import LockedError
from canon.stores.ledger import Ledger
from canon.stores.records import Content, RunRecord
from canon.stores.repolock import RepoLock
from canon.stores.runcache import RunCache


def test_ledger_appends_and_reads_back(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    a = ledger.begin_apply("abc", "local", ["canon", "apply"])
    ledger.record_stage(a, stage="train", action="run", status="ran", key="sha256:" + "0" * 64,
                        outputs={"m": "sha256:" + "1" * 64}, duration=1.5, exit_code=0)
    ledger.finish_apply(a, "succeeded")
    ledger.close()
    again = Ledger(tmp_path / "ledger.db")
    assert again.applies()[0]["status"] == "succeeded"
    assert again.stage_runs(a)[0]["outputs"] == {"m": "sha256:" + "1" * 64}
    assert again.check() == "ok"


def test_run_cache_round_trip_and_damage_is_a_miss(tmp_path: Path) -> None:
    cache = RunCache(tmp_path)
    key = hash_bytes(b"k")
    rec = RunRecord(key, {"out": Content(hash_bytes(b"o"), 1, 1, False)})
    cache.put(rec)
    assert cache.get(key) == rec
    path = next(tmp_path.rglob("*.json"))
    path.write_text("{not json")
    assert cache.get(key) is None


def test_repo_lock_names_the_holder_and_dead_holders_release(tmp_path: Path) -> None:
    path = tmp_path / "apply.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys,time; from pathlib import Path; from canon.stores.repolock import RepoLock;"
         f"l=RepoLock(Path({str(path)!r})); l.acquire(['canon','apply']); print('held', flush=True);"
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"pid {holder.pid} .*canon apply"):
            RepoLock(path).acquire(["canon", "apply"])
        holder.kill()
        holder.wait()
        lock = RepoLock(path)
        lock.acquire(["canon", "apply"])
        assert lock.previous is not None and lock.previous.pid == holder.pid
        lock.release()
        clean = RepoLock(path)
        clean.acquire(["x"])
        assert clean.previous is None  # a clean release leaves no holder record
        clean.release()
    finally:
        if holder.poll() is None:
            holder.kill()
    assert os.path.exists(path)
