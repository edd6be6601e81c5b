"""The ledger: an append-only record of every apply and every stage it ran.

SQLite in ``.canon/ledger.db`` (WAL; each append is one transaction, so a
crash leaves the previous records intact and never a torn one). A stage is
recorded only after its outputs are stored and the lock written. Later issues
publish it through a Git ref and query it for lineage and audit ("what
trained the model serving on date X").

Nothing secret goes in: no environment values, only the command as declared.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from canon import failpoints
from canon.errors import StateError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS applies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    commit_sha TEXT,
    profile TEXT,
    status TEXT NOT NULL,
    host TEXT,
    pid INTEGER,
    argv TEXT
);
CREATE TABLE IF NOT EXISTS stage_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    apply_id INTEGER NOT NULL REFERENCES applies(id),
    stage TEXT NOT NULL,
    action TEXT NOT NULL,
    status TEXT NOT NULL,
    key TEXT,
    outputs TEXT NOT NULL,
    duration REAL NOT NULL,
    exit_code INTEGER,
    recorded REAL NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS stage_runs_by_stage ON stage_runs(stage, recorded);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded REAL NOT NULL,
    environment TEXT NOT NULL,
    target TEXT NOT NULL,
    artifact TEXT NOT NULL,
    digest TEXT,
    previous TEXT,
    commit_sha TEXT,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    duration REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rollouts_by_env ON rollouts(environment, recorded);
"""


class Ledger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(stage_runs)")}
            if "reason" not in columns:  # a ledger written before stage runs had a reason
                with contextlib.suppress(sqlite3.OperationalError), self._db:
                    # another canon may add it first: "duplicate column name"
                    self._db.execute("ALTER TABLE stage_runs ADD COLUMN reason TEXT")
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"the ledger {path} cannot be opened: {exc}",
                hint="move it aside; it is rebuilt empty (the lock in Git still holds the state)",
            ) from exc

    def close(self) -> None:
        self._db.close()

    def begin_apply(self, commit: str | None, profile: str | None, argv: Sequence[str]) -> int:
        with self._db:
            cur = self._db.execute(
                "INSERT INTO applies(started, commit_sha, profile, status, host, pid, argv)"
                " VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (
                    time.time(),
                    commit,
                    profile,
                    socket.gethostname(),
                    os.getpid(),
                    json.dumps(list(argv)),
                ),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def record_stage(
        self,
        apply_id: int,
        *,
        stage: str,
        action: str,
        status: str,
        key: str | None,
        outputs: Mapping[str, str],
        duration: float,
        exit_code: int | None,
        reason: str | None = None,
    ) -> None:
        """``reason``: why the stage did something other than the plan said (e.g. it
        ran because its cached output was damaged)."""
        failpoints.hit("ledger.before_append")
        with self._db:
            self._db.execute(
                "INSERT INTO stage_runs(apply_id, stage, action, status, key, outputs, duration,"
                " exit_code, recorded, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    apply_id,
                    stage,
                    action,
                    status,
                    key,
                    json.dumps(dict(outputs), sort_keys=True),
                    duration,
                    exit_code,
                    time.time(),
                    reason,
                ),
            )

    def finish_apply(self, apply_id: int, status: str) -> None:
        with self._db:
            self._db.execute(
                "UPDATE applies SET finished = ?, status = ? WHERE id = ?",
                (time.time(), status, apply_id),
            )

    def applies(self, limit: int = 20) -> list[dict[str, Any]]:
        cur = self._db.execute(
            "SELECT id, started, finished, commit_sha, profile, status FROM applies"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def stage_runs(self, apply_id: int | None = None) -> list[dict[str, Any]]:
        query = (
            "SELECT apply_id, stage, action, status, key, outputs, duration, exit_code, reason"
            " FROM stage_runs"
        )
        args: tuple[Any, ...] = ()
        if apply_id is not None:
            query += " WHERE apply_id = ?"
            args = (apply_id,)
        cur = self._db.execute(query + " ORDER BY id", args)
        cols = [c[0] for c in cur.description]
        rows = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
        for row in rows:
            row["outputs"] = json.loads(row["outputs"])
        return rows

    def record_rollout(
        self,
        *,
        environment: str,
        target: str,
        artifact: str,
        digest: str | None,
        previous: str | None,
        commit: str | None,
        outcome: str,
        reason: str,
        duration: float,
    ) -> None:
        """One rollout of a deployment: what was deployed where, from which commit, and
        how it went (succeeded / rolled_back / unchanged / failed), with the reason."""
        with self._db:
            self._db.execute(
                "INSERT INTO rollouts (recorded, environment, target, artifact, digest,"
                " previous, commit_sha, outcome, reason, duration)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time(),
                    environment,
                    target,
                    artifact,
                    digest,
                    previous,
                    commit,
                    outcome,
                    reason,
                    duration,
                ),
            )

    def rollouts(self, environment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        query = (
            "SELECT id, recorded, environment, target, artifact, digest, previous,"
            " commit_sha, outcome, reason, duration FROM rollouts"
        )
        args: tuple[Any, ...] = ()
        if environment is not None:
            query += " WHERE environment = ?"
            args = (environment,)
        cur = self._db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def check(self) -> str:
        """SQLite's own integrity check ("ok" when the file is sound)."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])
