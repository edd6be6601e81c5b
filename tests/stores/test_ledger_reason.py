"""A stage run's reason: recorded, read back, and added to a ledger made before it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from canon.stores.ledger import Ledger

OLD_STAGE_RUNS = """
CREATE TABLE applies (id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL,
    finished REAL, commit_sha TEXT, profile TEXT, status TEXT NOT NULL, host TEXT,
    pid INTEGER, argv TEXT);
CREATE TABLE stage_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, apply_id INTEGER NOT NULL,
    stage TEXT NOT NULL, action TEXT NOT NULL, status TEXT NOT NULL, key TEXT,
    outputs TEXT NOT NULL, duration REAL NOT NULL, exit_code INTEGER, recorded REAL NOT NULL);
INSERT INTO applies(started, status) VALUES (1.0, 'succeeded');
INSERT INTO stage_runs(apply_id, stage, action, status, outputs, duration, recorded)
    VALUES (1, 'old', 'run', 'ran', '{}', 0.5, 1.0);
"""


def test_reason_is_recorded_and_an_old_ledger_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    db = sqlite3.connect(path)
    db.executescript(OLD_STAGE_RUNS)
    db.close()
    ledger = Ledger(path)
    try:
        ledger.record_stage(1, stage="s", action="run", status="ran", key=None, outputs={},
                            duration=0.1, exit_code=0, reason="ran instead of restoring: x")
        rows = ledger.stage_runs(1)
    finally:
        ledger.close()
    assert [(r["stage"], r["reason"]) for r in rows] == [
        ("old", None), ("s", "ran instead of restoring: x")]
    again = Ledger(path)  # opening it again does not try to add the column twice
    again.close()
