"""Experiments as Git refs, through the real CLI: run, sweep, queue, show, diff, promote."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from canon.apply.expqueue import QUEUE
from tests.e2e.conftest import Workspace

TRAIN = """
import json, os, pathlib, sys
p = json.loads(os.environ["CANON_PARAMS"])["train"]
if p.get("fail"):
    sys.exit(3)
pathlib.Path("build").mkdir(exist_ok=True)
pathlib.Path("build/model.txt").write_text(f"model lr={p['lr']}\\n")
json.dump({"loss": round((p["lr"] - 0.3) ** 2, 6), "acc": round(1 - abs(p["lr"] - 0.3), 6)},
          open("build/metrics.json", "w"))
with open(os.environ["RAN_LOG"], "a") as f:
    f.write(f"train {p['lr']}\\n")
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def proj(ws: Workspace, tmp_path: Path) -> tuple[Workspace, dict[str, str]]:
    ws.write(
        {
            "train.py": TRAIN,
            "params.yaml": "train:\n  lr: 0.1\n  fail: false\n",
            ".gitignore": ".canon/\nbuild/\nran.log\n",
        }
    )
    ws.declare(
        {
            "train": {
                "cmd": [sys.executable, "train.py"],
                "deps": ["train.py"],
                "params": ["train"],
                "outs": ["build/model.txt"],
                "metrics": ["build/metrics.json"],
            }
        },
        params="params.yaml",
    )
    git(ws.root, "add", "-A")
    git(ws.root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return ws, {"RAN_LOG": str(tmp_path / "ran.log")}


def runs(env: dict[str, str]) -> list[str]:
    path = Path(env["RAN_LOG"])
    return path.read_text().splitlines() if path.exists() else []


def test_exp_run_records_a_commit_and_leaves_the_workspace_alone(
    proj: tuple[Workspace, dict[str, str]],
) -> None:
    ws, env = proj
    ws.write({"notes.txt": "uncommitted\n"})
    git(ws.root, "add", "notes.txt")  # staged by the user: must stay staged, untouched
    before = (git(ws.root, "status", "--porcelain"), git(ws.root, "rev-parse", "HEAD"))
    r = ws.canon("exp", "run", "-S", "train.lr=0.5", "--name", "big", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (git(ws.root, "status", "--porcelain"), git(ws.root, "rev-parse", "HEAD")) == before
    assert ws.read("params.yaml") == "train:\n  lr: 0.1\n  fail: false\n"
    commit = git(ws.root, "rev-parse", "refs/canon/exps/big").strip()
    # the staged notes.txt is part of the experiment: its base is a snapshot on top of HEAD
    assert "including uncommitted changes to notes.txt" in r.stderr
    snapshot = git(ws.root, "rev-parse", f"{commit}^").strip()
    assert git(ws.root, "rev-parse", f"{snapshot}^").strip() == before[1].strip()
    assert git(ws.root, "show", f"{commit}:notes.txt") == "uncommitted\n"
    assert git(ws.root, "branch", "--contains", snapshot) == ""  # no branch moved onto it
    shown = json.loads(ws.canon("exp", "show", "--json").stdout)
    assert shown[0]["workspace"] == {"head": before[1].strip(), "files": ["notes.txt"]}
    assert "* includes uncommitted workspace changes" in ws.canon("exp", "show").stdout
    assert yaml.safe_load(git(ws.root, "show", f"{commit}:params.yaml"))["train"]["lr"] == 0.5
    assert json.loads(git(ws.root, "show", f"{commit}:build/metrics.json"))["acc"] == 0.8
    lock = yaml.safe_load(git(ws.root, "show", f"{commit}:canon.lock"))
    assert lock["profiles"]["default"]["stages"]["train"]["params"] == {
        "train": {"lr": 0.5, "fail": False}
    }
    assert git(ws.root, "worktree", "list").count("\n") == 1  # the worktree is gone
    # the same inputs again: restored from the shared run cache, nothing runs
    again = ws.canon("exp", "run", "-S", "train.lr=0.5", "--name", "big2", env=env)
    assert again.returncode == 0, again.stderr
    assert runs(env) == ["train 0.5"]
    # a name in use is refused, and the ref is not moved
    dup = ws.canon("exp", "run", "-S", "train.lr=0.2", "--name", "big", env=env)
    assert dup.returncode != 0 and "exists already" in dup.stderr
    assert git(ws.root, "rev-parse", "refs/canon/exps/big").strip() == commit
    assert runs(env) == ["train 0.5"]  # refused before anything ran, and left nothing
    assert git(ws.root, "worktree", "list").count("\n") == 1
    assert not any((ws.root / ".canon" / "exps" / "wt").iterdir())


def test_bad_input_is_a_clear_error_and_records_nothing(
    proj: tuple[Workspace, dict[str, str]],
) -> None:
    ws, env = proj
    r = ws.canon("exp", "run", "-S", "train.lrr=1", env=env)
    assert r.returncode == 2 and 'did you mean "train.lr"?' in r.stderr
    r = ws.canon("exp", "run", "-S", "train.lr=range(0,1,0.1)", "--max", "3", env=env)
    assert "would create 10 experiments, more than --max 3" in r.stderr
    r = ws.canon("exp", "run", "--rev", "nope", env=env)
    assert "'nope' is not a commit" in r.stderr
    r = ws.canon("exp", "run", "-S", "train.fail=true", "--name", "broken", env=env)
    assert r.returncode == 1 and "experiment broken failed" in r.stderr
    kept = ws.root / ".canon" / "exps" / "logs" / "broken" / "train.log"
    assert str(kept) in r.stderr and kept.is_file()  # the log outlives the worktree
    assert git(ws.root, "for-each-ref", "refs/canon/exps/") == ""
    assert "Traceback" not in r.stderr
    # the kept log goes with `canon gc` once a week old (here: --min-age 0)
    assert json.loads(ws.canon("gc", "--json").stdout)["logs"] == [] and kept.is_file()
    assert json.loads(ws.canon("gc", "--min-age", "0", "--json").stdout)["logs"] == ["broken"]
    assert not kept.parent.exists()


def test_sweep_queue_show_diff_promote_remove(proj: tuple[Workspace, dict[str, str]]) -> None:
    ws, env = proj
    q = ws.canon(
        "exp", "run", "-S", "train.lr=range(0.1,0.6,0.2)", "--queue", "--name", "s", env=env
    )
    assert q.returncode == 0 and q.stdout.count("queued s-") == 3, q.stdout + q.stderr
    assert ws.canon("exp", "queue", "status").stdout.count("queued ") == 3
    start = ws.canon("exp", "queue", "start", "-j", "2", env=env)
    assert start.returncode == 0, start.stdout + start.stderr
    assert start.stdout.count(" done ") == 3
    assert sorted(runs(env)) == ["train 0.1", "train 0.3", "train 0.5"]
    status = ws.canon("exp", "queue", "status").stdout
    assert status.count("done ") == 3 and "queued" not in status

    shown = json.loads(ws.canon("exp", "show", "--json", "--sort", "loss").stdout)
    assert next(e["name"] for e in shown) == "s-2" and shown[0]["metrics"]["loss"] == 0
    assert {e["params"]["train.lr"] for e in shown} == {0.1, 0.3, 0.5}
    where = json.loads(
        ws.canon("exp", "show", "--json", "--where", "train.lr<0.4 and acc>=0.9").stdout
    )
    assert [e["name"] for e in where] == ["s-2"]
    table = list(
        csv.reader(io.StringIO(ws.canon("exp", "show", "--csv", "--sort", "acc", "--desc").stdout))
    )
    assert table[0] == ["name", "commit", "train.lr", "acc", "loss"] and table[1][0] == "s-2"
    bad = ws.canon("exp", "show", "--where", "lr ~ 3")
    assert bad.returncode == 2 and "is not KEY OP VALUE" in bad.stderr
    typo = ws.canon("exp", "show", "--where", "train.lrr<0.4")
    assert typo.returncode == 2, typo.stdout + typo.stderr
    assert "--where train.lrr: no experiment has a param or metric" in typo.stderr
    assert 'did you mean "train.lr"?' in typo.stderr and typo.stdout == ""
    typo = ws.canon("exp", "show", "--sort", "nosuch")
    assert typo.returncode == 2 and "--sort nosuch: no experiment has" in typo.stderr
    assert "known keys: acc, loss, train.fail, train.lr" in typo.stderr  # no close match
    assert ws.canon("exp", "plot", "acc", "--x", "train.l").returncode == 2

    diff = json.loads(ws.canon("exp", "diff", "s-1", "s-3", "--json").stdout)
    assert diff["params"] == {"train.lr": [0.1, 0.5]}
    assert set(diff["stages"]) == {"train"} and set(diff["outputs"]) == {"build/model.txt"}
    assert diff["metrics"] == {}  # 0.1 and 0.5 are equally far from 0.3

    plot = ws.canon("exp", "plot", "acc", "--x", "train.lr", "-o", "acc.svg")
    assert plot.returncode == 0, plot.stderr
    assert Path(plot.stdout.strip()).read_text().lstrip().startswith("<?xml")
    page = ws.canon("exp", "plot", "acc", "--x", "train.lr", "-o", "acc.html")
    assert page.returncode == 0, page.stderr
    text = Path(page.stdout.strip()).read_text()
    assert "<svg" in text and "<th>train.lr</th>" in text and "<td>0.3</td><td>1</td>" in text

    head = git(ws.root, "rev-parse", "HEAD").strip()
    pr = ws.canon(
        "exp",
        "promote",
        "s-2",
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        },
    )
    assert pr.returncode == 0, pr.stderr
    assert git(ws.root, "rev-parse", "HEAD^").strip() == head
    assert yaml.safe_load(ws.read("params.yaml"))["train"]["lr"] == 0.3
    assert sorted(git(ws.root, "show", "--name-only", "--format=", "HEAD").split()) == [
        "canon.lock",
        "params.yaml",
    ]
    applied = ws.canon("apply", env=env)  # the promoted outputs come back from the run cache
    assert applied.returncode == 0 and runs(env).count("train 0.3") == 1, applied.stdout

    rm = ws.canon("exp", "remove", "s-1")
    assert rm.returncode == 0 and "removed 1" in rm.stdout
    assert ws.canon("exp", "remove", "s-1").returncode != 0
    assert ws.canon("exp", "remove", "--all").returncode == 0
    assert git(ws.root, "for-each-ref", "refs/canon/exps/") == ""


def test_a_killed_queue_loses_no_finished_experiment(
    proj: tuple[Workspace, dict[str, str]],
) -> None:
    import os
    import signal
    import time

    ws, env = proj
    slow = {**env, "SLOW": "1"}
    ws.write({"train.py": "import os, time\nif os.environ.get('SLOW'): time.sleep(1.0)\n" + TRAIN})
    git(ws.root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "slow")
    assert (
        ws.canon(
            "exp", "run", "-S", "train.lr=choice(0.1,0.2,0.3)", "--queue", "--name", "k"
        ).returncode
        == 0
    )
    proc = ws.popen("exp", "queue", "start", "-j", "1", env=slow)
    deadline = time.monotonic() + 60
    done_dir = ws.root / QUEUE / "done"
    # the first experiment is recorded and moved to done/ (the ref is written first)
    while time.monotonic() < deadline and not any(done_dir.glob("*.json")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-way through the second experiment
    proc.wait()
    refs = git(ws.root, "for-each-ref", "--format=%(refname:short)", "refs/canon/exps/").split()
    assert len(refs) == 1  # the finished one, whole; nothing half-written
    done = refs[0].removeprefix("canon/exps/")
    assert json.loads(git(ws.root, "show", f"refs/canon/exps/{done}:build/metrics.json"))
    git(ws.root, "fsck", "--no-dangling")
    status = ws.canon("exp", "queue", "status").stdout
    assert status.count("running ") >= 1 and "done " in status
    again = ws.canon("exp", "queue", "start", "-j", "2", env=env)  # requeues the dead run's
    assert again.returncode == 0, again.stdout + again.stderr
    refs = git(ws.root, "for-each-ref", "--format=%(refname:short)", "refs/canon/exps/").split()
    assert sorted(refs) == ["canon/exps/k-1", "canon/exps/k-2", "canon/exps/k-3"]
    assert "running" not in ws.canon("exp", "queue", "status").stdout
    assert ws.canon("exp", "run", "-S", "train.lr=0.9", "--queue").returncode == 0
    assert "cleared 4 queue entries" in ws.canon("exp", "queue", "clear", "--queued").stdout
    assert ws.canon("exp", "queue", "status").stdout.strip() == "The queue is empty."
    assert git(ws.root, "worktree", "list").count("\n") == 1  # left-over worktrees pruned


def test_queue_start_reports_each_experiments_progress(
    proj: tuple[Workspace, dict[str, str]],
) -> None:
    ws, env = proj
    q = ws.canon("exp", "run", "-S", "train.lr=choice(0.2,0.4)", "--queue", "--name", "p")
    assert q.returncode == 0, q.stdout + q.stderr
    out = ws.canon("exp", "queue", "start", "-j", "2", "--json", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    progress = [(e["name"], e["stage"], e["status"])
                for e in events if e["event"] == "ExperimentProgress"]
    names = sorted({n for n, _, _ in progress})
    assert len(names) == 2
    for name in names:
        mine = [(stage, status) for n, stage, status in progress if n == name]
        assert mine == [("", "started"), ("train", "running"), ("train", "ran")]
    finished = {e["name"]: e for e in events if e["event"] == "ExperimentFinished"}
    assert sorted(finished) == names
    assert {round(e["metrics"]["acc"], 6) for e in finished.values()} == {0.9}


def test_gc_keeps_an_experiments_outputs_until_it_is_removed(
    proj: tuple[Workspace, dict[str, str]],
) -> None:
    ws, env = proj
    assert ws.canon("exp", "run", "-S", "train.lr=0.7", "--name", "keep", env=env).returncode == 0
    lock = yaml.safe_load(git(ws.root, "show", "refs/canon/exps/keep:canon.lock"))
    (state,) = lock["profiles"].values()
    digest = state["stages"]["train"]["outs"]["build/model.txt"]["digest"]

    kept = json.loads(ws.canon("gc", "--json").stdout)
    assert digest not in kept["removed"] and kept["kept"] >= 1  # the experiment's ref keeps it
    removed = ws.canon("exp", "remove", "keep")
    assert removed.returncode == 0 and "`canon gc` frees" in removed.stdout
    freed = json.loads(ws.canon("gc", "--json").stdout)
    assert digest in freed["removed"]


def test_an_experiments_params_file_keeps_the_users_comments_through_promote(
    proj: tuple[Workspace, dict[str, str]],
) -> None:
    ws, env = proj
    text = ("# learning knobs, tuned by hand\ntrain:\n  lr: 0.1      # the step size\n"
            "  fail: false  # for tests\n")
    ws.write({"params.yaml": text})
    git(ws.root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "comments")
    assert ws.canon("exp", "run", "-S", "train.lr=0.4", "--name", "c", env=env).returncode == 0
    recorded = git(ws.root, "show", "refs/canon/exps/c:params.yaml")
    assert recorded == text.replace("lr: 0.1 ", "lr: 0.4 ")
    promoted = ws.canon("exp", "promote", "c", env={"GIT_AUTHOR_NAME": "t",
                        "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})
    assert promoted.returncode == 0, promoted.stderr
    assert ws.read("params.yaml") == text.replace("lr: 0.1 ", "lr: 0.4 ")
