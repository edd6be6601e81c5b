"""canon init: the minimal project and the bundled weather example, run end to end."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from canon.declare.schema import ProjectFile
from canon.errors import CanonError
from canon.interfaces import scaffold
from canon.interfaces.scaffold import available_examples, init_project
from tests.e2e.conftest import CANON

HAS_GIT = shutil.which("git") is not None


def _load_config(root: Path) -> dict[str, Any]:
    data = yaml.safe_load((root / "canon.yaml").read_text())
    ProjectFile.model_validate(data)  # the schema canon itself uses
    assert isinstance(data, dict)
    return data


# -- the minimal project ---------------------------------------------------------------


def test_init_writes_a_minimal_valid_project(tmp_path: Path) -> None:
    root = tmp_path / "churn-model"
    written = init_project(root).written

    assert written == [".gitignore", "canon.yaml", "params.yaml"]
    config = _load_config(root)
    assert config["project"] == "churn-model"
    assert config["stages"] == {}
    assert "# " in (root / "canon.yaml").read_text()  # the commented sample stage
    assert yaml.safe_load((root / "params.yaml").read_text()) in (None, {})
    assert ".canon/" in (root / ".gitignore").read_text().splitlines()
    if HAS_GIT:
        assert (root / ".git").is_dir()


def test_init_refuses_an_existing_project(tmp_path: Path) -> None:
    init_project(tmp_path)
    before = (tmp_path / "canon.yaml").read_bytes()

    with pytest.raises(CanonError, match=r"already has canon\.yaml") as info:
        init_project(tmp_path)
    assert info.value.hint is not None and "--force" in info.value.hint
    assert (tmp_path / "canon.yaml").read_bytes() == before

    (tmp_path / "canon.yaml").write_text("project: mine\n")
    assert "canon.yaml" in init_project(tmp_path, force=True).written
    assert (tmp_path / "canon.yaml").read_bytes() == before


@pytest.mark.parametrize(
    ("dirname", "expected"),
    [("my project!", "my-project"), ("2024 exp", "_2024-exp"), ("!!!", "project")],
)
def test_project_name_is_sanitised(tmp_path: Path, dirname: str, expected: str) -> None:
    root = tmp_path / dirname
    init_project(root)
    assert _load_config(root)["project"] == expected


def test_gitignore_is_merged_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.log")  # no final newline
    init_project(tmp_path)
    assert (tmp_path / ".gitignore").read_text() == "*.log\n.canon/\n"

    (tmp_path / "canon.yaml").unlink()
    assert ".gitignore" not in init_project(tmp_path).written
    assert (tmp_path / ".gitignore").read_text() == "*.log\n.canon/\n"


def test_init_without_git_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaffold.shutil, "which", lambda _name: None)
    result = init_project(tmp_path)
    assert "canon.yaml" in result.written
    assert not result.git.available and result.git.commit is None
    assert not (tmp_path / ".git").exists()


# -- git: the project's first commit ----------------------------------------------------

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    return done.stdout.strip()


def committed_files(root: Path) -> list[str]:
    return git(root, "ls-tree", "-r", "--name-only", "HEAD").splitlines()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit of the user's."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "notes.txt").write_text("mine\n")
    git(root, "add", "notes.txt")
    git(root, "commit", "-qm", "mine")
    return root


def test_example_in_a_new_repository_is_its_first_commit(tmp_path: Path) -> None:
    root = tmp_path / "wx"
    result = init_project(root, "weather")

    assert result.git.created and result.git.commit is not None
    assert result.git.message == "canon init --example weather"
    assert git(root, "rev-parse", "HEAD") == result.git.commit
    assert git(root, "log", "--format=%s") == "canon init --example weather"
    assert sorted(committed_files(root)) == result.written
    assert git(root, "status", "--porcelain") == ""  # nothing left to commit


def test_empty_project_in_a_new_repository_is_committed_the_same_way(tmp_path: Path) -> None:
    result = init_project(tmp_path / "p")
    assert result.git.created and result.git.message == "canon init"
    assert committed_files(tmp_path / "p") == [".gitignore", "canon.yaml", "params.yaml"]


def test_init_in_a_repository_with_commits_commits_and_stages_nothing(repo: Path) -> None:
    result = init_project(repo / "sub", "weather")

    assert not (repo / "sub" / ".git").exists()  # no nested repository
    assert not result.git.created and result.git.commit is None
    assert result.root_was_empty
    assert git(repo, "log", "--format=%s") == "mine"
    assert git(repo, "status", "--porcelain") == "?? sub/"  # written, not staged


def test_init_in_a_repository_without_commits_commits_only_its_own_files(
    tmp_path: Path,
) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "staged.txt").write_text("the user's, staged\n")
    git(tmp_path, "add", "staged.txt")
    (tmp_path / "loose.txt").write_text("the user's, untracked\n")

    result = init_project(tmp_path)

    assert not result.git.created and result.git.commit is not None
    assert committed_files(tmp_path) == [".gitignore", "canon.yaml", "params.yaml"]
    assert git(tmp_path, "status", "--porcelain").splitlines() == ["A  staged.txt", "?? loose.txt"]


def test_a_directory_the_enclosing_repository_ignores_gets_its_own(repo: Path) -> None:
    """``make demo`` writes demo/, which canon's own repository ignores (as cargo new)."""
    (repo / ".gitignore").write_text("/demo/\n")
    result = init_project(repo / "demo", "weather")

    assert result.git.created and (repo / "demo" / ".git").is_dir()
    assert git(repo / "demo", "rev-parse", "--show-toplevel") == str((repo / "demo").resolve())
    assert git(repo / "demo", "status", "--porcelain") == ""
    assert git(repo, "log", "--format=%s") == "mine"


def test_without_a_git_identity_the_first_commit_says_who_wrote_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gitconfig"
    config.write_text("[user]\n\tuseConfigOnly = true\n")  # no guessing from the host
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in GIT_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("EMAIL", raising=False)

    result = init_project(tmp_path / "p")

    assert result.git.fallback_author and result.git.commit is not None
    author = git(tmp_path / "p", "log", "--format=%an <%ae>|%cn <%ce>")
    who = f"{scaffold.FALLBACK_NAME} <{scaffold.FALLBACK_EMAIL}>"
    assert author == f"{who}|{who}"


def test_a_failing_commit_is_an_init_error_that_says_what_to_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "pre-commit").write_text("#!/bin/sh\necho refused by a hook >&2\nexit 1\n")
    (hooks / "pre-commit").chmod(0o755)
    config = tmp_path / "gitconfig"
    config.write_text(f"[core]\n\thooksPath = {hooks}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var, value in GIT_ENV.items():
        monkeypatch.setenv(var, value)

    with pytest.raises(CanonError, match=r"was written, but git commit failed.*refused by a hook"):
        init_project(tmp_path / "p")
    assert (tmp_path / "p" / "canon.yaml").is_file()


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CANON, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **GIT_ENV, "NO_COLOR": "1"},
    )


def test_cli_says_what_it_committed_or_what_to_commit(tmp_path: Path, repo: Path) -> None:
    fresh = _cli(tmp_path, "init", "new", "--example", "weather")
    assert fresh.returncode == 0, fresh.stderr
    head = git(tmp_path / "new", "rev-parse", "HEAD")
    assert f"Committed them in a new Git repository: {head[:12]}" in fresh.stdout

    inside = _cli(repo, "init", "sub")
    assert inside.returncode == 0, inside.stderr
    assert "Not committed: this repository already has commits" in inside.stdout
    assert "git add -- sub && git commit -m 'canon init'" in inside.stdout
    # the printed command does what it says
    subprocess.run(
        inside.stdout.splitlines()[-2].strip(),
        shell=True,
        cwd=repo,
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    assert git(repo, "status", "--porcelain") == ""

    (repo / "sub" / "canon.yaml").unlink()
    again = _cli(repo / "sub", "init")  # into a directory that is not empty: each file
    assert "git add -- canon.yaml && git commit -m 'canon init'" in again.stdout


# -- examples --------------------------------------------------------------------------


def test_unknown_example_lists_the_available_ones(tmp_path: Path) -> None:
    assert "weather" in available_examples()
    with pytest.raises(CanonError, match=r"unknown example 'nope'") as info:
        init_project(tmp_path, "nope")
    assert info.value.hint is not None and "weather" in info.value.hint
    assert not (tmp_path / "canon.yaml").exists()


def test_example_without_its_data_package_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scaffold.importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(CanonError, match=r"vega_datasets.*not installed") as info:
        init_project(tmp_path, "weather")
    assert info.value.hint is not None and "pip install 'canon[example]'" in info.value.hint
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_example_refuses_to_overwrite_user_files(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("my notes\n")
    with pytest.raises(CanonError, match=r"README\.md"):
        init_project(tmp_path, "weather")
    assert (tmp_path / "README.md").read_text() == "my notes\n"
    assert not (tmp_path / "canon.yaml").exists()

    assert "README.md" in init_project(tmp_path, "weather", force=True).written
    assert (tmp_path / "README.md").read_text() != "my notes\n"


def test_weather_example_files_and_data(tmp_path: Path) -> None:
    written = init_project(tmp_path, "weather").written

    for rel in (
        "canon.yaml",
        "params.yaml",
        "requirements.lock",
        "README.md",
        ".gitignore",
        "data/seattle-weather.csv",
        "src/weather/features.py",
        "src/weather/serve.py",
    ):
        assert rel in written
    assert not any("__pycache__" in rel for rel in written)

    config = _load_config(tmp_path)
    assert config["project"] == "weather"
    assert list(config["stages"]) == ["features", "train", "evaluate"]
    assert set(config["profiles"]) == {"local", "cloud"}

    with (tmp_path / "data" / "seattle-weather.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1461
    assert rows[0]["date"] == "2012/01/01" and rows[-1]["date"] == "2015/12/31"

    ignored = (tmp_path / ".gitignore").read_text().splitlines()
    assert "build/" in ignored and ".canon/" in ignored and "canon.lock" not in ignored
    for line in (tmp_path / "requirements.lock").read_text().splitlines():
        assert line.startswith("#") or re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", line)


# -- the weather example, run end to end -----------------------------------------------


def _stage_commands(
    root: Path, profile: str = "local"
) -> list[tuple[str, list[str], dict[str, str]]]:
    """Each stage's argv and env, interpolated the way canon does: per argument, no shell."""
    config = _load_config(root)
    params = yaml.safe_load((root / config["params"]).read_text())
    values: dict[str, Any] = {f"profile.{k}": v for k, v in config["profiles"][profile].items()}

    def substitute(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key.startswith("params."):
                value: Any = params
                for part in key.split(".")[1:]:
                    value = value[part]
                return str(value)
            return str(values[key])

        return re.sub(r"\$\{([^}]+)\}", one, text)

    for name, dataset in config["data"].items():
        values[f"data.{name}"] = substitute(dataset["source"])

    commands = []
    for name, stage in config["stages"].items():
        argv = [substitute(arg) for arg in shlex.split(stage["cmd"])]
        assert argv[0] == "python"
        env = {key: substitute(str(value)) for key, value in stage.get("env", {}).items()}
        commands.append((name, [sys.executable, *argv[1:]], env))
    return commands


def _run_stages(root: Path) -> dict[str, str]:
    """Run every stage in order; return the sha256 of every declared output."""
    config = _load_config(root)
    for name, argv, env in _stage_commands(root):
        done = subprocess.run(
            argv, cwd=root, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"stage {name} failed:\n{done.stderr}"
        assert done.stdout.startswith(f"{name}: ")
    digests = {}
    for stage in config["stages"].values():
        for rel in [*stage.get("outs", []), *stage.get("metrics", [])]:
            digests[rel] = hashlib.sha256((root / rel).read_bytes()).hexdigest()
    return digests


@pytest.mark.slow
def test_weather_example_runs_end_to_end_and_is_deterministic(tmp_path: Path) -> None:
    init_project(tmp_path, "weather")
    first = _run_stages(tmp_path)

    metrics = json.loads((tmp_path / "build" / "metrics.json").read_text())
    assert metrics["auc"] > 0.6
    assert 0.5 < metrics["accuracy"] <= 1 and metrics["log_loss"] > 0
    assert metrics["n_train"] > 1000 and metrics["n_test"] > 300
    assert metrics["train_until"] <= metrics["test_from"]  # back-tested on unseen days

    model = json.loads((tmp_path / "build" / "model.json").read_text())
    assert model["format"] == "weather-logistic/1"
    assert len(model["coef"]) == len(model["features"]) == len(model["scaler"]["mean"])

    shutil.rmtree(tmp_path / "build")
    assert _run_stages(tmp_path) == first  # byte-identical outputs


@pytest.mark.slow
def test_weather_serving_matches_training_features(tmp_path: Path) -> None:
    init_project(tmp_path, "weather")
    _run_stages(tmp_path)
    script = """
import csv, json, sys
import pandas as pd
from weather import model, serve

with open("data/seattle-weather.csv", newline="") as handle:
    records = list(csv.DictReader(handle))[-30:]
served = serve.predict(records)
table = pd.read_csv("build/features.csv", parse_dates=["date"])
table = table[table["date"] >= served[0]["date"]]
offline = model.load("build/model.json").predict_proba(table)
json.dump({"served": served, "offline": [float(p) for p in offline]}, sys.stdout)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": "src"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    served, offline = result["served"], result["offline"]
    assert served[-1]["date"] == "2015-12-31" and served[-1]["for_date"] == "2016-01-01"
    assert all(0 < row["rain_probability"] < 1 for row in served)
    # The feature table stops a day early (2015-12-31 has no label); the rest must agree.
    assert len(offline) == len(served) - 1
    for row, p in zip(served, offline, strict=False):
        assert row["rain_probability"] == pytest.approx(p, abs=1e-6)
