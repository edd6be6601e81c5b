"""``canon reproduce REV``: stages re-run from REV's commit, compared with its canon.lock."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

from tests.e2e.conftest import Workspace, step

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
    # provenance: the pin it ran on, in the report and the ledger
    pinned = yaml.safe_load(subprocess.run(["git", "show", f"{rev}:canon.lock"], cwd=ws.root,
                                           capture_output=True, text=True, check=True).stdout)
    (state,) = pinned["profiles"].values()
    digest = state["data"]["d"]["digest"]
    assert report["provenance"]["datasets"] == {"d": digest}
    db = sqlite3.connect(ws.root / ".canon" / "ledger.db")
    assert db.execute("SELECT status, key FROM stage_runs WHERE stage = 'data.d'").fetchall() == [
        ("input", digest)]


PROBE = """
import json, os, pathlib, sys
try:
    import six
    version = six.__version__
except ImportError:
    version = None
with open(os.environ["PROBE_LOG"], "a") as log:
    log.write(json.dumps({"prefix": sys.prefix, "six": version,
                          "venv": os.environ.get("VIRTUAL_ENV")}) + "\\n")
pathlib.Path("build").mkdir(exist_ok=True)
pathlib.Path("build/out.txt").write_text("the same in any environment\\n")
"""


def _probes(path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_reproduce_rebuilds_the_declared_environment_once_and_reuses_it(
    ws: Workspace, tmp_path
) -> None:
    """REV's requirements lock is installed into a venv the stages run in (`python3` on
    PATH is the venv's); a second reproduce of the same lock reuses it; --env current
    runs in canon's own environment; a declared Python that is not here is exit 2."""
    probe_log = tmp_path / "probe.log"
    env = {"PROBE_LOG": str(probe_log)}
    ws.write({"probe.py": PROBE, "requirements.lock": "six==1.16.0\n",
              ".gitignore": ".canon/\nbuild/\nran.log\n"})
    ws.declare(
        {"probe": {"cmd": ["python3", "probe.py"], "deps": ["probe.py"],
                   "outs": ["build/out.txt"]}},
        environment={"python": "{}.{}".format(*sys.version_info[:2]),
                     "requirements": "requirements.lock"},
    )
    assert ws.canon("apply", env=env).returncode == 0
    rev = _commit(ws, "applied")

    first = ws.canon("reproduce", rev, "--check", "--json", env=env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads(first.stdout.splitlines()[-1])["report"]
    assert report["stages"] == [{"stage": "probe", "verdict": "identical", "files": [],
                                 "metrics": {}, "deterministic": True}]
    used = report["environment"]
    assert used["rebuilt"] is True and used["packages"] == ["six==1.16.0"]
    assert used["python"].startswith("{}.{}.".format(*sys.version_info[:2]))
    assert "built in envs/" in used["description"]
    envs = [p for p in (ws.root / ".canon" / "envs").iterdir() if p.is_dir()]
    assert len(envs) == 1
    ran = _probes(probe_log)[-1]
    assert ran == {"prefix": str(envs[0]), "six": "1.16.0", "venv": str(envs[0])}

    again = ws.canon("reproduce", rev, "--check", env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "reused in envs/" in again.stdout and "Reproduced." in again.stdout
    assert _probes(probe_log)[-1]["prefix"] == str(envs[0])
    assert len([p for p in (ws.root / ".canon" / "envs").iterdir() if p.is_dir()]) == 1

    current = ws.canon("reproduce", rev, "--env", "current", "--json", env=env)
    assert current.returncode == 0, current.stdout + current.stderr
    used = json.loads(current.stdout.splitlines()[-1])["report"]["environment"]
    assert used["rebuilt"] is False and "--env current" in used["description"]
    assert _probes(probe_log)[-1]["prefix"] != str(envs[0])

    db = sqlite3.connect(ws.root / ".canon" / "ledger.db")
    rows = db.execute("SELECT status, reason FROM stage_runs WHERE stage = 'environment' "
                      "AND action = 'reproduce' ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["rebuilt", "rebuilt", "current"]
    assert rows[0][1].startswith(f"{rev}'s environment (requirements.lock: ")
    assert "the current environment (--env current" in rows[-1][1]

    # gc keeps a venv used within the week; --min-age 0 removes it
    assert ws.canon("gc").returncode == 0 and envs[0].is_dir()
    gone = ws.canon("gc", "--min-age", "0")
    assert "removed 1 rebuilt environment(s)" in gone.stdout and not envs[0].exists()

    ws.declare(
        {"probe": {"cmd": ["python3", "probe.py"], "deps": ["probe.py"],
                   "outs": ["build/out.txt"]}},
        environment={"python": "3.4", "requirements": "requirements.lock"},
    )
    assert ws.canon("apply", env=env).returncode == 0
    old = _commit(ws, "declares a Python this machine lacks")
    missing = ws.canon("reproduce", old, env=env)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "declares Python 3.4, and no python3.4 is on PATH" in missing.stderr
    assert "--env current" in missing.stderr and "Traceback" not in missing.stderr


def test_reproduce_reports_a_lock_pip_cannot_install(ws: Workspace) -> None:
    ws.write({"requirements.lock": "six==0.0.0.404\n", ".gitignore": ".canon/\nbuild/\nran.log\n"})
    ws.declare({"copy": step("build/out.txt", "input.txt")},
               environment={"requirements": "requirements.lock"})
    assert ws.canon("apply").returncode == 0
    rev = _commit(ws, "a lock with a version that does not exist")
    out = ws.canon("reproduce", rev, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "could not rebuild the environment (pip install -r requirements.lock" in out.stderr
    assert "six==0.0.0.404" in out.stderr and "Traceback" not in out.stderr
    # nothing half-built is taken for a venv: the failed one has no marker
    assert not list((ws.root / ".canon" / "envs").glob("*/canon-env.json"))


def test_reproduce_images_rebuilds_the_recorded_images_and_names_the_differing_layer(
    ws: Workspace,
) -> None:
    """--images: a base rebuilt from its commit is identical; a model rebuilt from a
    reproduced output that differs (a timestamp, deterministic: false) differs in its
    own layer only, and the report and the ledger say so."""
    ws.write({"noisy.py": NOISY, ".gitignore": ".canon/\nbuild/\nran.log\n"})
    ws.declare(
        {"train": {"cmd": [sys.executable, "noisy.py"], "deps": ["noisy.py"],
                   "outs": ["build/model.txt"], "metrics": ["build/metrics.json"],
                   "deterministic": False}},
        artifacts={"base": {"kind": "base"},
                   "model": {"kind": "model", "from": "base", "add": ["build/model.txt"]}},
    )
    _commit(ws, "the code: images are built from a commit")
    applied = ws.canon("apply", timeout=300)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    rev = _commit(ws, "trained, images recorded")

    out = ws.canon("reproduce", rev, "--images", "--check", "--json", timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr  # the model image differs
    report = json.loads(out.stdout.splitlines()[-1])["report"]
    assert [s["verdict"] for s in report["stages"]] == ["within-tolerance"]
    images = {i["name"]: i for i in report["images"]}
    assert images["base"]["verdict"] == "identical"
    assert images["base"]["rebuilt"] == images["base"]["recorded"]
    assert images["model"]["verdict"] == "differs"
    assert images["model"]["layers"] == ["layer 3 differs (canon: add build/model.txt)"]
    assert report["ok"] is False

    text = ws.canon("reproduce", rev, "--images", timeout=300)
    assert text.returncode == 0, text.stdout + text.stderr  # no --check: the report only
    assert "image.base" in text.stdout and "identical" in text.stdout
    assert "layer 3 differs (canon: add build/model.txt)" in text.stdout

    db = sqlite3.connect(ws.root / ".canon" / "ledger.db")
    rows = db.execute(
        "SELECT stage, status, reason FROM stage_runs WHERE stage LIKE 'image.%' ORDER BY id"
    ).fetchall()
    assert rows[:2] == [("image.base", "identical", None),
                        ("image.model", "differs", "layer 3 differs (canon: add build/model.txt)")]


def test_reproduce_images_of_a_commit_without_images_says_so(ws: Workspace) -> None:
    ws.declare({"copy": step("build/out.txt", "input.txt")})
    ws.write({".gitignore": ".canon/\nbuild/\nran.log\n"})
    assert ws.canon("apply").returncode == 0
    rev = _commit(ws, "no images declared")
    out = ws.canon("reproduce", rev, "--images", "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "records no image: there is none to rebuild" in out.stdout + out.stderr


def test_a_lock_that_is_a_symlink_out_of_the_repository_is_refused(
    ws: Workspace, tmp_path
) -> None:
    outside = tmp_path / "netrc"
    outside.write_text("machine github.com login bob password hunter2\n")
    ws.write({".gitignore": ".canon/\nbuild/\nran.log\n"})
    ws.declare({"copy": step("build/out.txt", "input.txt")},
               environment={"requirements": "requirements.lock"})
    (ws.root / "requirements.lock").write_text("six==1.16.0\n")
    assert ws.canon("apply").returncode == 0
    (ws.root / "requirements.lock").unlink()
    (ws.root / "requirements.lock").symlink_to(outside)
    rev = _commit(ws, "the lock is a link out of the repository")
    out = ws.canon("reproduce", rev)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "requirements.lock cannot be read: is a symbolic link" in out.stderr
    assert "hunter2" not in out.stdout + out.stderr
    assert not list((ws.root / ".canon").glob("envs/*/requirements.lock"))
