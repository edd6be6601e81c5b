"""`canon exp push` / `canon exp pull`: a teammate gets an experiment through a real
Git remote (a bare repository) and a directory data remote, and promotes it without
running anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.e2e.conftest import CANON, Workspace
from tests.e2e.test_experiments import TRAIN, git, runs


def _project(ws: Workspace, store: Path) -> None:
    ws.write({"train.py": TRAIN, "params.yaml": "train:\n  lr: 0.1\n  fail: false\n",
              ".gitignore": ".canon/\nbuild/\nran.log\n"})
    ws.declare(
        {"train": {"cmd": [sys.executable, "train.py"], "deps": ["train.py"],
                   "params": ["train"], "outs": ["build/model.txt"],
                   "metrics": ["build/metrics.json"]}},
        params="params.yaml",
        remotes={"store": {"url": str(store)}},
        default_remote="store",
    )


def _canon(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    ident = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
             "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run([CANON, *args], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", **ident, **env})


def _shared(ws: Workspace, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """The project committed, a directory data remote and an empty bare Git remote."""
    store, origin = tmp_path / "store", tmp_path / "origin.git"
    _project(ws, store)
    git(ws.root, "add", "-A")
    git(ws.root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    return store, origin, {"RAN_LOG": str(tmp_path / "ran.log")}


def test_an_experiment_travels_through_git_and_the_data_remote(
    ws: Workspace, tmp_path: Path
) -> None:
    store, origin, env = _shared(ws, tmp_path)
    git(ws.root, "remote", "add", "origin", str(origin))
    git(ws.root, "push", "-q", "origin", "HEAD:refs/heads/main")
    assert ws.canon("exp", "run", "-S", "train.lr=0.3", "--name", "lr3", env=env).returncode == 0
    assert ws.canon("exp", "run", "-S", "train.lr=0.5", "--name", "lr5", env=env).returncode == 0

    # nothing named, an unknown one, an unknown Git remote: clear errors, nothing pushed
    assert "name them, or pass --all" in ws.canon("exp", "push", "origin", env=env).stderr
    unknown = ws.canon("exp", "push", "origin", "nope", env=env)
    assert unknown.returncode == 2 and "no experiment 'nope'" in unknown.stderr
    nowhere = ws.canon("exp", "push", "nowhere", "lr3", env=env)
    assert nowhere.returncode == 2 and "no Git remote named 'nowhere'" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr and not store.exists()  # checked before uploading

    pushed = ws.canon("exp", "push", "origin", "lr3", "--json", env=env)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    result = json.loads(pushed.stdout.splitlines()[-1])
    assert result["experiments"] == ["lr3"] and result["objects"] >= 2
    assert git(origin, "for-each-ref", "--format=%(refname)", "refs/canon/") == (
        "refs/canon/exps/lr3\n")
    gone = ws.canon("exp", "push", str(tmp_path / "missing.git"), "lr3", env=env)
    assert gone.returncode == 4 and "missing.git failed" in gone.stderr

    # a teammate: a fresh clone, an empty cache
    mate = tmp_path / "mate"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(origin), str(mate)], check=True)
    pulled = _canon(mate, "exp", "pull", "origin", "lr3", env=env)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert "pulled 1 experiment(s) from origin: lr3" in pulled.stdout
    shown = json.loads(_canon(mate, "exp", "show", "--json", env=env).stdout)
    assert [(e["name"], e["metrics"]["acc"]) for e in shown] == [("lr3", 1.0)]
    before = len(runs(env))
    promoted = _canon(mate, "exp", "promote", "lr3", env=env)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    applied = _canon(mate, "apply", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert len(runs(env)) == before  # restored from what was pulled: nothing re-ran
    assert (mate / "build/model.txt").read_text() == "model lr=0.3\n"

    # --all pushes the rest; pulling again moves nothing; a same-named experiment that
    # differs is refused unless --force
    assert ws.canon("exp", "push", "origin", "--all", env=env).returncode == 0
    again = _canon(mate, "exp", "pull", "origin", "--all", env=env)
    assert again.returncode == 0 and "pulled 1 experiment(s) from origin: lr5" in again.stdout
    assert ws.canon("exp", "remove", "lr5").returncode == 0
    assert ws.canon("exp", "run", "-S", "train.lr=0.7", "--name", "lr5", env=env).returncode == 0
    clash = ws.canon("exp", "push", "origin", "lr5", env=env)
    assert clash.returncode == 2 and "differs there" in clash.stderr and "--force" in clash.stderr
    forced = ws.canon("exp", "push", "origin", "lr5", "--force", env=env)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    lock = yaml.safe_load(git(origin, "show", "refs/canon/exps/lr5:params.yaml"))
    assert lock["train"]["lr"] == 0.7


def test_a_pull_whose_objects_failed_is_finished_by_the_next(
    ws: Workspace, tmp_path: Path
) -> None:
    store, origin, env = _shared(ws, tmp_path)
    git(ws.root, "push", "-q", str(origin), "HEAD:refs/heads/main")
    assert ws.canon("exp", "run", "-S", "train.lr=0.3", "--name", "a", env=env).returncode == 0
    assert ws.canon("exp", "push", str(origin), "--all", env=env).returncode == 0
    mate = tmp_path / "mate"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(origin), str(mate)], check=True)

    store.rename(tmp_path / "away")  # the data remote is gone for a while
    first = _canon(mate, "exp", "pull", str(origin), "--all", env=env)
    assert first.returncode != 0 and "Traceback" not in first.stderr
    (tmp_path / "away").rename(store)
    again = _canon(mate, "exp", "pull", str(origin), "--all", "--json", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    result = json.loads(again.stdout.splitlines()[-1])
    assert result["experiments"] == [] and result["objects"] >= 2  # no ref moved, objects came
    before = len(runs(env))
    assert _canon(mate, "exp", "promote", "a", env=env).returncode == 0
    assert _canon(mate, "apply", env=env).returncode == 0 and len(runs(env)) == before


def test_a_pull_clash_is_the_users_to_resolve_and_urls_are_never_printed(
    ws: Workspace, tmp_path: Path
) -> None:
    _, origin, env = _shared(ws, tmp_path)
    # a URL with a token, which Git maps to the bare repository
    secret = "https://alice:ghp_SECRETTOKEN@example.com/x.git"
    git(ws.root, "config", f"url.{origin}.insteadOf", secret)
    assert ws.canon("exp", "run", "-S", "train.lr=0.3", "--name", "c", env=env).returncode == 0
    pushed = ws.canon("exp", "push", secret, "c", "--json", env=env)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "SECRETTOKEN" not in pushed.stdout + pushed.stderr
    assert json.loads(pushed.stdout.splitlines()[-1])["git_remote"] == (
        "https://***@example.com/x.git")
    # a local experiment of the same name that differs: refused, exit 2, unless --force
    assert ws.canon("exp", "run", "-S", "train.lr=0.5", "--name", "d", env=env).returncode == 0
    git(ws.root, "update-ref", "refs/canon/exps/c", "refs/canon/exps/d")  # a sibling: not ff
    clash = ws.canon("exp", "pull", secret, "c", env=env)
    assert clash.returncode == 2, clash.stdout + clash.stderr
    assert "differs there" in clash.stderr and "--force" in clash.stderr
    assert "SECRETTOKEN" not in clash.stdout + clash.stderr
    forced = ws.canon("exp", "pull", secret, "c", "--force", env=env)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "SECRETTOKEN" not in forced.stdout + forced.stderr
    assert yaml.safe_load(git(ws.root, "show", "refs/canon/exps/c:params.yaml"))["train"][
        "lr"] == 0.3
