"""``canon reproduce REV``: stages re-run from REV's commit, compared with its canon.lock."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

from tests.e2e.conftest import Workspace

NOISY = """
import json, os, pathlib, random, time
pathlib.Path("build").mkdir(exist_ok=True)
# the model's bytes change every run (a timestamp), its metric only in the 9th digit
pathlib.Path("build/model.txt").write_text(f"trained at {time.time_ns()}\\n")
jitter = random.random() * 1e-9 if os.environ.get("DRIFT") is None else 0.1
json.dump({"auc": 0.8 + jitter}, open("build/metrics.json", "w"))
"""


def _commit(ws: Workspace, message: str) -> str:
    subprocess.run(["git", "add", "-A"], cwd=ws.root, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message],
        cwd=ws.root,
        check=True,
    )
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ws.root, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_reproduce_reports_per_stage_and_records_it(ws: Workspace) -> None:
    ws.write({"noisy.py": NOISY, ".gitignore": ".canon/\nbuild/\nran.log\n"})
    ws.declare(
        {
            "prep": {
                "cmd": [sys.executable, "step.py", "build/prep.txt", "input.txt"],
                "deps": ["step.py", "input.txt"],
                "outs": ["build/prep.txt"],
            },
            "train": {
                "cmd": [sys.executable, "noisy.py"],
                "deps": ["noisy.py", "build/prep.txt"],
                "outs": ["build/model.txt"],
                "metrics": ["build/metrics.json"],
                "deterministic": False,
            },
        }
    )
    no_lock = _commit(ws, "no lock yet")
    bad = ws.canon("reproduce", no_lock)
    assert bad.returncode == 2 and "has no canon.lock" in bad.stderr
    assert "is not a commit" in ws.canon("reproduce", "nope").stderr
    assert ws.canon("apply").returncode == 0
    rev = _commit(ws, "trained")
    ws.reset_log()

    out = ws.canon("reproduce", rev, "--check", "--json", "--rtol", "1e-6")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout.splitlines()[-1])["report"]
    assert report["ok"] is True and report["commit"] == rev
    verdicts = {s["stage"]: s for s in report["stages"]}
    assert verdicts["prep"]["verdict"] == "identical"
    assert verdicts["train"]["verdict"] == "within-tolerance"
    assert verdicts["train"]["files"] == ["build/metrics.json", "build/model.txt"]
    assert verdicts["train"]["metrics"] == {}  # auc moved by < 1e-9: within rtol
    events = [json.loads(line) for line in out.stdout.splitlines()[:-1]]
    ran = {e["name"]: e["status"] for e in events if e["event"] == "StageFinished"}
    assert ran == {"prep": "ran", "train": "ran"}  # no cache: both really ran again
    assert (
        subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=ws.root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        == ""
    )

    drift = ws.canon("reproduce", rev, "--check", env={"DRIFT": "1"})
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert "differs" in drift.stdout and "metric build/metrics.json:auc" in drift.stdout
    assert "NOT reproduced." in drift.stdout

    db = sqlite3.connect(ws.root / ".canon" / "ledger.db")
    rows = db.execute(
        "SELECT status, argv FROM applies WHERE argv LIKE '%reproduce%' ORDER BY id"
    ).fetchall()
    assert [r[0] for r in rows] == ["reproduced", "differs"]
    stages = db.execute(
        "SELECT stage, status FROM stage_runs WHERE action = 'reproduce' ORDER BY id"
    ).fetchall()
    assert stages[:2] == [("prep", "identical"), ("train", "within-tolerance")]


def test_reproduce_fetches_pinned_data_missing_from_the_cache_from_the_remote(
    ws: Workspace, tmp_path
) -> None:
    import shutil

    import yaml

    remote = tmp_path / "remote"
    ws.write({"data/a.txt": "a\n", "data/sub/b.txt": "b\n",
              ".gitignore": ".canon/\nbuild/\nran.log\ndata/\n"})
    doc = {
        "project": "t",
        "remotes": {"store": {"url": str(remote)}},
        "default_remote": "store",
        "data": {"d": {"source": "data"}},
        "stages": {"use": {"cmd": [sys.executable, "step.py", "build/out.txt", "${data.d}"],
                           "deps": ["step.py", "data.d"], "outs": ["build/out.txt"]}},
    }
    ws.write({"canon.yaml": yaml.safe_dump(doc, sort_keys=False)})
    assert ws.canon("apply").returncode == 0
    rev = _commit(ws, "pinned and ran")
    assert ws.canon("push").returncode == 0
    # a fresh cache, and a source that has moved on: only the remote has the pin
    shutil.rmtree(ws.root / ".canon" / "cache")
    shutil.rmtree(ws.root / ".canon" / "data")
    ws.write({"data/a.txt": "changed since\n"})

    out = ws.canon("reproduce", rev, "--check", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    report = json.loads(lines[-1])["report"]
    assert [(s["stage"], s["verdict"]) for s in report["stages"]] == [("use", "identical")]
    notices = [json.loads(line).get("message", "") for line in lines[:-1]]
    assert "fetching the pins of data.d from remote store" in notices
