"""``canon backtest``: earlier commits' models, with their own code, on other windows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Workspace

TRAIN = """
import json, os, pathlib, sys
until = json.loads(os.environ["CANON_PARAMS"])["train"]["until"]
pathlib.Path("build").mkdir(exist_ok=True)
pathlib.Path("build/model.json").write_text(json.dumps({"until": until, "code": CODE}))
open(os.environ["RAN_LOG"], "a").write(f"train {until}\\n")
"""
EVALUATE = """
import json, os, pathlib
p = json.loads(os.environ["CANON_PARAMS"])["evaluate"]
model = json.loads(pathlib.Path("build/model.json").read_text())
if p["test_from"] <= model["until"]:
    raise SystemExit(f"evaluate: {p['test_from']} overlaps the training data")
score = int(p["test_from"][:4]) - int(model["until"][:4]) + model["code"] / 10
json.dump({"score": score, "trained_until": model["until"]}, open("build/metrics.json", "w"))
open(os.environ["RAN_LOG"], "a").write(f"evaluate {p['test_from']}\\n")
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


def test_backtest_matrix_uses_each_commits_own_model_and_code(
    ws: Workspace, tmp_path: Path
) -> None:
    env = {"RAN_LOG": str(tmp_path / "ran.log")}
    ws.write(
        {
            "train.py": "CODE = 1\n" + TRAIN,
            "evaluate.py": EVALUATE,
            ".gitignore": ".canon/\nbuild/\n",
            "params.yaml": 'train: {until: "2013-12-31"}\n'
            'evaluate: {test_from: "2014-01-01", test_until: "2014-12-31"}\n',
        }
    )
    ws.declare(
        {
            "train": {
                "cmd": [sys.executable, "train.py"],
                "deps": ["train.py"],
                "params": ["train"],
                "outs": ["build/model.json"],
            },
            "evaluate": {
                "cmd": [sys.executable, "evaluate.py"],
                "deps": ["evaluate.py", "build/model.json"],
                "params": ["evaluate"],
                "metrics": ["build/metrics.json"],
            },
        },
        params="params.yaml",
    )
    assert ws.canon("apply", env=env).returncode == 0
    old = _commit(ws, "model trained to 2013, code v1")
    # the next model: more data and new code (CODE = 2)
    ws.write(
        {
            "train.py": "CODE = 2\n" + TRAIN,
            "params.yaml": 'train: {until: "2014-12-31"}\n'
            'evaluate: {test_from: "2015-01-01", test_until: "2015-12-31"}\n',
        }
    )
    assert ws.canon("apply", env=env).returncode == 0
    new = _commit(ws, "model trained to 2014, code v2")
    Path(env["RAN_LOG"]).unlink()

    r = ws.canon(
        "backtest",
        "--model",
        f"{old},{new}",
        "--window",
        "2015-01-01..2015-12-31",
        "--window",
        "2014-06-01..2014-12-31",
        "--json",
        env=env,
    )
    assert r.returncode == 1, r.stdout + r.stderr  # new on 2014 overlaps its training data
    result = json.loads(r.stdout)
    cells = {(c["model"][:7], c["window"][:4]): c for c in result["cells"]}
    assert cells[(old[:7], "2015")]["metrics"]["score"] == 2.1  # old model, old code (v1)
    assert cells[(old[:7], "2015")]["metrics"]["trained_until"] == "2013-12-31"
    assert cells[(old[:7], "2014")]["metrics"]["score"] == 1.1
    assert cells[(new[:7], "2015")]["metrics"]["score"] == 1.2  # new model, new code (v2)
    assert "overlaps the training data" in cells[(new[:7], "2014")]["error"]
    ran = Path(env["RAN_LOG"]).read_text().splitlines()
    assert not any(line.startswith("train") for line in ran)  # models restored, never retrained
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/canon/exps/"],
        cwd=ws.root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert len([x for x in refs if x]) == 3  # the failed cell records nothing
    table = ws.canon("backtest", "--model", old, "--window", "2015-01-01..2015-12-31", env=env)
    assert table.returncode == 0 and "2.1000" in table.stdout  # reused, not re-run
    assert len(Path(env["RAN_LOG"]).read_text().splitlines()) == len(ran)
    bad = ws.canon("backtest", "--model", old, "--window", "2015")
    assert bad.returncode == 2 and "is not START..END" in bad.stderr
