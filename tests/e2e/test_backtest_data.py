"""``canon backtest --data NAME@REV``: the weather example's models on two pins of its data.

Commit 1 pins the data up to mid-2014 and trains to 2013; commit 2 pins all years
(2012-2015) and trains to 2014. Each model is tested on each pin, in 2015: the
model of commit 1 on commit 2's data is a real back-test (its own code and
model, never retrained, on days it never saw); on its own data there is no
2015 to test on, which fails that cell alone.

The example declares images; these tests apply its stages only (`canon apply evaluate`):
a back-test needs no image, and the commits record none ("no image recorded").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import CANON

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def canon(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **GIT_ENV,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [CANON, *args], cwd=root, capture_output=True, text=True, env=env, timeout=600
    )


def commit(root: Path, message: str) -> str:
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(
        ["git", "commit", "-qm", message], cwd=root, check=True, env={**os.environ, **GIT_ENV}
    )
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


def set_params(root: Path, train_until: str, test_from: str, test_until: str) -> None:
    path = root / "params.yaml"
    text = path.read_text()
    text = text.replace('train_until: "2014-12-31"', f'train_until: "{train_until}"')
    text = text.replace('test_from: "2015-01-01"', f'test_from: "{test_from}"')
    text = text.replace('test_until: "2015-12-31"', f'test_until: "{test_until}"')
    path.write_text(text)


@pytest.fixture(scope="module")
def weather(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    tmp = tmp_path_factory.mktemp("bt")
    root = tmp / "weather"
    assert canon(tmp, "init", "weather", "--example", "weather").returncode == 0  # + commit
    csv = root / "data" / "seattle-weather.csv"
    full = csv.read_text()
    shutil.copyfile(csv, tmp / "full.csv")
    lines = full.splitlines(keepends=True)
    csv.write_text("".join([lines[0], *(ln for ln in lines[1:] if ln[:10] < "2014/07/01")]))
    original = (root / "params.yaml").read_text()
    set_params(root, "2013-12-31", "2014-01-01", "2014-06-30")
    first = canon(root, "apply", "evaluate")
    assert first.returncode == 0, first.stdout + first.stderr
    c1 = commit(root, "data to mid-2014, model to 2013")
    shutil.copyfile(tmp / "full.csv", csv)
    assert canon(root, "data", "update", "weather").returncode == 0
    (root / "params.yaml").write_text(original)
    second = canon(root, "apply", "evaluate")
    assert second.returncode == 0, second.stdout + second.stderr
    c2 = commit(root, "all years, model to 2014")
    return root, c1, c2


def metrics_at(root: Path, rev: str) -> dict[str, object]:
    subprocess.run(["git", "checkout", "-q", rev], cwd=root, check=True)
    try:
        assert canon(root, "apply", "evaluate").returncode == 0  # restores: nothing runs
        return dict(json.loads((root / "build" / "metrics.json").read_text()))
    finally:
        subprocess.run(["git", "checkout", "-q", "-"], cwd=root, check=True)


def test_models_by_data_pins_matrix(weather: tuple[Path, str, str]) -> None:
    root, c1, c2 = weather
    own1, own2 = metrics_at(root, c1), metrics_at(root, c2)
    assert own1["n_train"] < own2["n_train"]
    r = canon(
        root,
        "backtest",
        "--model",
        f"{c1[:10]},{c2[:10]}",
        "--data",
        f"weather@{c1[:10]}",
        "--data",
        f"weather@{c2[:10]}",
        "--window",
        "2015-01-01..2015-12-31",
        "--json",
    )
    assert r.returncode == 1, r.stdout + r.stderr  # the 2015 window on data that ends in 2014
    result = json.loads(r.stdout)
    cells = {(c["model"][:7], c["window"].split()[0].split("@")[1][:7]): c for c in result["cells"]}
    old_on_new = cells[(c1[:7], c2[:7])]
    assert not old_on_new["error"], old_on_new
    # the model is commit 1's: trained on its rows, to 2013; tested on 2015 of the new pin
    assert old_on_new["metrics"]["n_train"] == own1["n_train"]
    assert old_on_new["metrics"]["train_until"] == own1["train_until"]
    assert old_on_new["metrics"]["n_test"] > 300
    assert old_on_new["obtained"] == "restored from the cache, as its commit recorded it"
    new_on_new = cells[(c2[:7], c2[:7])]
    assert "auc" in new_on_new["metrics"], new_on_new
    assert new_on_new["metrics"]["auc"] == own2["auc"]  # its own data: its own result
    assert "test period" in cells[(c1[:7], c1[:7])]["error"]  # no 2015 in commit 1's pin
    assert "no image recorded at its commit (built before images" in result["obtained"][c1[:10]]

    # provenance: the experiment names the swapped pin, the base commit and the model
    shown = json.loads(canon(root, "exp", "show", "--json", "--all-params").stdout)
    exp = next(e for e in shown if e["name"] == old_on_new["experiment"])
    assert exp["base"] == c1
    assert exp["backtest"]["data"]["weather"]["commit"] == c2
    assert exp["datasets"]["weather"] == exp["backtest"]["data"]["weather"]["digest"]
    assert exp["backtest"]["data"]["weather"]["replaced"] != exp["datasets"]["weather"]
    assert exp["profile"] == "local"
    assert "train" not in exp["stages"]  # the model stage never ran in the back-test

    # --data weather: the pin of the workspace now (commit 2's); the same commit, pin
    # digest and window as a recorded cell, so that experiment is reused, nothing runs
    before = len(shown)
    again = canon(
        root,
        "backtest",
        "--model",
        c1[:10],
        "--data",
        "weather",
        "--window",
        "2015-01-01..2015-12-31",
        "--json",
    )
    assert again.returncode == 0, again.stdout + again.stderr
    cell = json.loads(again.stdout)["cells"][0]
    assert cell["experiment"] == old_on_new["experiment"]
    assert cell["metrics"] == old_on_new["metrics"]
    assert len(json.loads(canon(root, "exp", "show", "--json").stdout)) == before
    table = canon(
        root,
        "backtest",
        "--model",
        c1[:10],
        "--data",
        "weather",
        "--window",
        "2015-01-01..2015-12-31",
    )
    assert "model " + c1[:10] + ": no image recorded" in table.stdout


def test_a_model_missing_from_the_run_cache_is_rebuilt_from_its_commit(
    weather: tuple[Path, str, str],
) -> None:
    root, c1, c2 = weather
    own1 = metrics_at(root, c1)
    # the model's bytes are gone from the cache (and the run cache): it must be rebuilt
    lock = yaml.safe_load(
        subprocess.run(
            ["git", "show", f"{c1}:canon.lock"], cwd=root, capture_output=True, text=True
        ).stdout
    )
    model = lock["profiles"]["local"]["stages"]["train"]["outs"]["build/model.json"]
    digest = (model["digest"] if isinstance(model, dict) else model).removeprefix("sha256:")
    (root / ".canon" / "cache" / "sha256" / digest[:2] / digest[2:]).unlink()
    shutil.rmtree(root / ".canon" / "runs")
    r = canon(
        root,
        "backtest",
        "--model",
        c1[:10],
        "--data",
        f"weather@{c2[:10]}",
        "--window",
        "2015-01-01..2015-06-30",
        "--json",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    cell = json.loads(r.stdout)["cells"][0]
    assert cell["obtained"] == "rebuilt from the commit (not in the cache)"
    assert cell["metrics"]["train_until"] == own1["train_until"]
    assert cell["metrics"]["n_train"] == own1["n_train"]


def test_bad_data_choices_are_clear_errors(weather: tuple[Path, str, str]) -> None:
    root, c1, c2 = weather
    r = canon(root, "backtest", "--model", c1[:10], "--data", f"weathr@{c2[:10]}")
    assert r.returncode == 2 and 'did you mean "weather"?' in r.stderr, r.stderr
    r = canon(root, "backtest", "--model", c1[:10], "--data", "weather@nosuchrev")
    assert r.returncode == 2 and "'nosuchrev' is not a commit" in r.stderr, r.stderr
    r = canon(root, "backtest", "--model", c1[:10], "--data", "weather", "--model-stage", "trian")
    assert r.returncode == 2 and 'did you mean "train"?' in r.stderr, r.stderr
    r = canon(root, "backtest", "--model", c1[:10], "--data", "we ather")
    assert r.returncode == 2 and "is not NAME[@REV]" in r.stderr, r.stderr
    r = canon(root, "backtest", "--model", c1[:10])
    assert r.returncode == 2 and "--data NAME[@REV]" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
