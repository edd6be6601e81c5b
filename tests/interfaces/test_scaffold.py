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

HAS_GIT = shutil.which("git") is not None


def _load_config(root: Path) -> dict[str, Any]:
    data = yaml.safe_load((root / "canon.yaml").read_text())
    ProjectFile.model_validate(data)  # the schema canon itself uses
    assert isinstance(data, dict)
    return data


# -- the minimal project ---------------------------------------------------------------


def test_init_writes_a_minimal_valid_project(tmp_path: Path) -> None:
    root = tmp_path / "churn-model"
    written = init_project(root)

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
    assert "canon.yaml" in init_project(tmp_path, force=True)
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
    assert ".gitignore" not in init_project(tmp_path)
    assert (tmp_path / ".gitignore").read_text() == "*.log\n.canon/\n"


def test_init_inside_a_git_repo_does_not_nest_one(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "--quiet"], cwd=tmp_path, check=True)
    init_project(tmp_path / "sub")
    assert not (tmp_path / "sub" / ".git").exists()


def test_init_without_git_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaffold.shutil, "which", lambda _name: None)
    assert "canon.yaml" in init_project(tmp_path)
    assert not (tmp_path / ".git").exists()


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

    assert "README.md" in init_project(tmp_path, "weather", force=True)
    assert (tmp_path / "README.md").read_text() != "my notes\n"


def test_weather_example_files_and_data(tmp_path: Path) -> None:
    written = init_project(tmp_path, "weather")

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
