"""``canon backtest``: earlier commits' models, with their own code, on other windows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

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
    # the matrix as a plot: PNG by default, HTML (the SVG and the numbers) when asked
    plotted = ws.root / ".canon" / "plots" / "backtest-score.png"
    assert f"plot: {plotted}" in table.stdout
    assert plotted.read_bytes().startswith(b"\x89PNG")
    page = ws.canon("backtest", "--model", f"{old},{new}", "--window", "2015-01-01..2015-12-31",
                    "--plot", "bt.html", "--json", env=env)
    assert json.loads(page.stdout)["plot"] == "bt.html"
    text = (ws.root / "bt.html").read_text()
    assert "<svg" in text and f"<td>{old}</td><td>2.1</td>" in text
    assert f"<td>{new}</td><td>1.2</td>" in text
    wrong = ws.canon("backtest", "--model", old, "--window", "2015-01-01..2015-12-31",
                     "--plot", "bt.txt", env=env)
    assert wrong.returncode == 2 and "name a .png, .svg or .html file" in wrong.stderr
    bad = ws.canon("backtest", "--model", old, "--window", "2015")
    assert bad.returncode == 2 and "is not START..END" in bad.stderr


def _imaged_project(ws: Workspace, env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """A model trained to 2013 with model + base images (no requirements: no pip),
    applied and committed; the commit and its canon.lock. Evaluation adds the number
    in the dataset ``bonus`` (data/bonus.txt) to the score."""
    ws.write(
        {
            "train.py": "CODE = 1\n" + TRAIN,
            "evaluate.py": EVALUATE.replace(
                '+ model["code"] / 10', '+ model["code"] / 10 + int(open(sys.argv[1]).read())'
            ).replace("import json, os, pathlib", "import json, os, pathlib, sys"),
            "data/bonus.txt": "0\n",
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
                "cmd": [sys.executable, "evaluate.py", "${data.bonus}"],
                "deps": ["evaluate.py", "build/model.json", "data.bonus"],
                "params": ["evaluate"],
                "metrics": ["build/metrics.json"],
            },
        },
        params="params.yaml",
        data={"bonus": {"source": "data/bonus.txt"}},
        artifacts={
            "base": {"kind": "base"},
            "model": {"kind": "model", "from": "base", "add": ["build/model.json"]},
        },
    )
    _commit(ws, "the code: images are built from a commit")
    applied = ws.canon("apply", env=env, timeout=600)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    commit = _commit(ws, "model trained to 2013, its images recorded")
    lock = yaml.safe_load(
        subprocess.run(
            ["git", "show", f"{commit}:canon.lock"],
            cwd=ws.root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    (state,) = lock["profiles"].values()
    assert set(state["images"]) == {"base", "model"}, state
    return commit, state


def _forget_model(ws: Workspace, state: dict[str, Any]) -> None:
    """The cache loses the model's bytes (canon's own drop) and the run cache its runs."""
    from canon.stores.objects import ObjectStore

    out = state["stages"]["train"]["outs"]["build/model.json"]
    digest = out["digest"] if isinstance(out, dict) else out
    store = ObjectStore(ws.root / ".canon" / "cache")
    assert store.has(digest)
    store.drop([digest])
    assert not store.has(digest)
    shutil.rmtree(ws.root / ".canon" / "runs", ignore_errors=True)


def _backtest_2015(ws: Workspace, commit: str, env: dict[str, str]) -> dict[str, Any]:
    r = ws.canon(
        "backtest", "--model", commit, "--window", "2015-01-01..2015-12-31", "--json", env=env
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return dict(json.loads(r.stdout))


def test_a_model_missing_from_the_cache_is_restored_from_its_model_image(
    ws: Workspace, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    env = {"RAN_LOG": str(log)}
    commit, state = _imaged_project(ws, env)
    image = state["images"]["model"]["digest"]
    _forget_model(ws, state)
    log.unlink()

    result = _backtest_2015(ws, commit, env)
    (cell,) = result["cells"]
    assert cell["metrics"] == {"score": 2.1, "trained_until": "2013-12-31"}, cell
    ran = log.read_text().splitlines()
    assert ran == ["evaluate 2015-01-01"]  # the model was not retrained
    assert cell["obtained"] == f"restored from its model image {image}"
    obtained = result["obtained"][commit]
    assert f"model files restored from its model image {image}" in obtained
    # the model's bytes are back in the cache, as the lock records them
    from canon.stores.objects import ObjectStore

    out = state["stages"]["train"]["outs"]["build/model.json"]
    digest = out["digest"] if isinstance(out, dict) else out
    assert ObjectStore(ws.root / ".canon" / "cache").verify(digest)
    # the provenance is recorded with the experiment
    shown = json.loads(ws.canon("exp", "show", "--json").stdout)
    exp = next(e for e in shown if e["name"] == cell["experiment"])
    assert exp["backtest"]["model_image"] == image


def test_a_model_whose_image_is_gone_too_is_rebuilt_and_says_why(
    ws: Workspace, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    env = {"RAN_LOG": str(log)}
    commit, state = _imaged_project(ws, env)
    image = state["images"]["model"]["digest"]
    _forget_model(ws, state)
    from canon.stores.oci.layout import ImageLayout

    ImageLayout(ws.root / ".canon" / "images").remove_blob(image)
    log.unlink()

    result = _backtest_2015(ws, commit, env)
    (cell,) = result["cells"]
    assert cell["metrics"] == {"score": 2.1, "trained_until": "2013-12-31"}, cell
    assert log.read_text().splitlines() == ["train 2013-12-31", "evaluate 2015-01-01"]
    assert cell["obtained"].startswith("rebuilt from the commit (not in the cache); ")
    assert f"image model {image[:19]}… not in .canon/images" in cell["obtained"]
    assert "`canon build` at its commit" in cell["obtained"]  # never pushed: no pull-image
    assert "rebuilt from the commit" in result["obtained"][commit]


def test_a_model_tested_on_other_data_is_restored_from_its_model_image(
    ws: Workspace, tmp_path: Path
) -> None:
    log = tmp_path / "ran.log"
    env = {"RAN_LOG": str(log)}
    commit, state = _imaged_project(ws, env)
    image = state["images"]["model"]["digest"]
    # other data: the bonus is 10 now (pinned in the workspace's canon.lock)
    ws.write({"data/bonus.txt": "10\n"})
    updated = ws.canon("data", "update", "bonus", env=env)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    _forget_model(ws, state)
    log.unlink(missing_ok=True)

    r = ws.canon(
        "backtest",
        "--model",
        commit,
        "--data",
        "bonus",
        "--window",
        "2015-01-01..2015-12-31",
        "--json",
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (cell,) = json.loads(r.stdout)["cells"]
    assert cell["metrics"] == {"score": 12.1, "trained_until": "2013-12-31"}, cell
    assert log.read_text().splitlines() == ["evaluate 2015-01-01"]  # never retrained
    assert cell["obtained"] == f"restored from its model image {image}"


def test_files_from_a_model_image_are_taken_only_as_the_lock_records_them(
    ws: Workspace, tmp_path: Path
) -> None:
    from dataclasses import replace

    from canon.apply.modelimage import Primed, prime_from_image
    from canon.digest import hash_bytes
    from canon.stores.lockfile import read_lock
    from canon.stores.objects import ObjectStore

    _, raw = _imaged_project(ws, {"RAN_LOG": str(tmp_path / "ran.log")})
    lock = read_lock(ws.root)
    (profile,) = lock.profiles
    state = lock.state(profile)
    record = state.stages["train"]
    real = record.outs["build/model.json"]
    store = ObjectStore(ws.root / ".canon" / "cache")
    assert prime_from_image(ws.root, state, "train") == Primed()  # in the cache: nothing to do
    _forget_model(ws, raw)

    # the lock records other bytes than the image holds: never taken
    other = replace(real, digest=hash_bytes(b'{"until": "forged"}'))
    forged = state.with_stage("train", replace(record, outs={"build/model.json": other}))
    primed = prime_from_image(ws.root, forged, "train")
    assert primed.image is None
    assert "holds no build/model.json as recorded" in primed.note
    assert not store.has(other.digest) and not store.has(real.digest)
    # a directory output is not taken from an image
    tree = replace(real, is_dir=True)
    dirs = state.with_stage("train", replace(record, outs={"build/model.json": tree}))
    assert "is a directory" in prime_from_image(ws.root, dirs, "train").note
    assert not store.has(real.digest)
    # as recorded: taken, verified
    primed = prime_from_image(ws.root, state, "train")
    assert primed == Primed(image=str(state.images["model"].digest))
    assert store.verify(real.digest)


PROBE = """
import json, os, sys
try:
    import six
    version = six.__version__
except ImportError:
    version = None
with open(os.environ["PROBE_LOG"], "a") as log:
    log.write(json.dumps({"prefix": sys.prefix, "six": version}) + "\\n")
"""


def _probes(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_backtest_env_rebuild_runs_each_models_cells_in_its_declared_environment(
    ws: Workspace, tmp_path: Path
) -> None:
    """--env rebuild: the model commit's requirements lock installed into a venv (built
    once per model), its cells' stages run with `python3` from it; the cells are other
    experiments than --env current ones; a declared Python not here is exit 2, no cell."""
    probe_log = tmp_path / "probe.log"
    env = {"RAN_LOG": str(tmp_path / "ran.log"), "PROBE_LOG": str(probe_log)}
    ws.write(
        {
            "train.py": "CODE = 1\n" + TRAIN,
            "evaluate.py": EVALUATE.replace(
                '+ model["code"] / 10', '+ model["code"] / 10 + int(open(sys.argv[1]).read())'
            ).replace("import json, os, pathlib", "import json, os, pathlib, sys")
            + PROBE,
            "data/bonus.txt": "0\n",
            "requirements.lock": "six==1.16.0\n",
            ".gitignore": ".canon/\nbuild/\n",
            "params.yaml": 'train: {until: "2013-12-31"}\n'
            'evaluate: {test_from: "2014-01-01", test_until: "2014-12-31"}\n',
        }
    )
    stages = {
        "train": {
            "cmd": [sys.executable, "train.py"],
            "deps": ["train.py"],
            "params": ["train"],
            "outs": ["build/model.json"],
        },
        "evaluate": {  # `python3`: found on PATH, the rebuilt venv's first
            "cmd": ["python3", "evaluate.py", "${data.bonus}"],
            "deps": ["evaluate.py", "build/model.json", "data.bonus"],
            "params": ["evaluate"],
            "metrics": ["build/metrics.json"],
        },
    }
    here = "{}.{}".format(*sys.version_info[:2])
    ws.declare(
        stages,
        params="params.yaml",
        data={"bonus": {"source": "data/bonus.txt"}},
        environment={"python": here, "requirements": "requirements.lock"},
    )
    applied = ws.canon("apply", env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    rev = _commit(ws, "model trained to 2013, six pinned at 1.16.0")
    probe_log.unlink()
    Path(env["RAN_LOG"]).unlink()
    envs = ws.root / ".canon" / "envs"

    def backtest(mode: str, *extra: str) -> Any:
        return ws.canon(
            "backtest",
            "--model",
            rev,
            "--window",
            "2015-01-01..2015-12-31",
            "--window",
            "2016-01-01..2016-12-31",
            "--env",
            mode,
            *extra,
            env=env,
            timeout=300,
        )

    r = backtest("rebuild", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    built = [p for p in envs.iterdir() if p.is_dir()]
    assert len(built) == 1  # one venv for the model, whatever the number of cells
    ran = _probes(probe_log)
    assert ran == [{"prefix": str(built[0]), "six": "1.16.0"}] * 2, ran
    used = result["environments"][rev]
    assert used["rebuilt"] is True and used["packages"] == ["six==1.16.0"]
    assert used["python"].startswith(here + ".") and used["requirements"].startswith("sha256:")
    assert "built in envs/" in used["description"]
    rebuilt = {c["window"][:4]: c for c in result["cells"]}
    assert set(rebuilt) == {"2015", "2016"}
    for cell in rebuilt.values():
        assert cell["metrics"]["trained_until"] == "2013-12-31" and not cell["error"]
        assert cell["experiment"].endswith("-env") and cell["environment"]["rebuilt"] is True
    assert rebuilt["2015"]["metrics"]["score"] == 2.1
    shown = json.loads(ws.canon("exp", "show", "--json").stdout)
    recorded = next(e for e in shown if e["name"] == rebuilt["2015"]["experiment"])
    assert recorded["environment"]["packages"] == ["six==1.16.0"]  # the provenance
    assert not any(
        line.startswith("train") for line in Path(env["RAN_LOG"]).read_text().split("\n")
    )

    # --data: the model restored, the data swapped, what reads it runs in the venv too
    swapped = ws.canon(
        "backtest",
        "--model",
        rev,
        "--data",
        "bonus",
        "--window",
        "2015-01-01..2015-12-31",
        "--env",
        "rebuild",
        "--json",
        env=env,
        timeout=300,
    )
    assert swapped.returncode == 0, swapped.stdout + swapped.stderr
    (cell,) = json.loads(swapped.stdout)["cells"]
    assert cell["experiment"].endswith("-env") and cell["environment"]["rebuilt"] is True
    assert cell["metrics"]["score"] == 2.1, cell
    assert _probes(probe_log)[2:] == [{"prefix": str(built[0]), "six": "1.16.0"}]
    probe_log.write_text("".join(json.dumps(p) + "\n" for p in _probes(probe_log)[:2]))

    # again: the cells are reused (nothing runs), and so is the venv
    again = backtest("rebuild")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(_probes(probe_log)) == 2
    assert f"model {rev} ran in {rev}'s environment (requirements.lock: " in again.stdout
    assert "reused in envs/" in again.stdout

    # --env current: other experiments (not the rebuilt ones reused), canon's environment
    current = backtest("current", "--json")
    assert current.returncode == 0, current.stdout + current.stderr
    result = json.loads(current.stdout)
    assert result["environments"][rev]["rebuilt"] is False
    assert "--env current" in result["environments"][rev]["description"]
    for cell in result["cells"]:
        assert cell["experiment"] == rebuilt[cell["window"][:4]]["experiment"].removesuffix("-env")
        assert cell["environment"]["rebuilt"] is False
        assert cell["metrics"] == rebuilt[cell["window"][:4]]["metrics"]
    ran = _probes(probe_log)[2:]
    assert len(ran) == 2, ran  # they ran: the rebuilt cells' outputs were not restored
    assert all(p["prefix"] != str(built[0]) and p["six"] != "1.16.0" for p in ran), ran

    # a model whose commit declares a Python this machine lacks: exit 2 before any cell
    ws.declare(
        stages,
        params="params.yaml",
        data={"bonus": {"source": "data/bonus.txt"}},
        environment={"python": "3.4", "requirements": "requirements.lock"},
    )
    assert ws.canon("apply", env=env).returncode == 0
    old = _commit(ws, "declares a Python this machine lacks")
    probes = len(_probes(probe_log))  # the apply ran evaluate (another key)
    before = subprocess.run(
        ["git", "for-each-ref", "refs/canon/exps/"], cwd=ws.root, capture_output=True, text=True
    ).stdout
    missing = ws.canon(
        "backtest",
        "--model",
        f"{rev},{old}",
        "--window",
        "2017-01-01..2017-12-31",
        "--env",
        "rebuild",
        env=env,
    )
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "declares Python 3.4, and no python3.4 is on PATH" in missing.stderr
    assert "--env current" in missing.stderr and "Traceback" not in missing.stderr
    assert len(_probes(probe_log)) == probes  # no cell ran, not even the first model's
    after = subprocess.run(
        ["git", "for-each-ref", "refs/canon/exps/"], cwd=ws.root, capture_output=True, text=True
    ).stdout
    assert after == before
