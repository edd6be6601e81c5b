"""The spine end to end: status -> apply -> status, through the real CLI."""

from __future__ import annotations

import json
import signal
import sys
import time

import yaml

from tests.e2e.conftest import Workspace, step

CHAIN = {
    "prep": step("build/prep.txt", "input.txt"),
    "train": step("build/model.txt", "build/prep.txt", params=["a"],
                  env={"SALT": "${params.a}"}),
    "report": step("build/report.txt", "build/model.txt"),
}


def test_fresh_project_runs_then_is_clean(ws: Workspace) -> None:
    ws.declare(CHAIN)
    st = ws.canon("status")
    assert st.returncode == 1, st.stderr
    assert "stage.prep" in st.stdout and "NEVER_RUN" in st.stdout
    assert "UPSTREAM_CHANGED prep" in st.stdout
    result = ws.canon("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ws.ran() == ["prep", "train", "report"]
    assert ws.read("build/model.txt") == "in\n1"
    again = ws.canon("status")
    assert again.returncode == 0, again.stdout
    assert "Everything is up to date" in again.stdout
    lock = yaml.safe_load(ws.read("canon.lock"))
    train = lock["profiles"]["default"]["stages"]["train"]
    assert train["params"] == {"a": 1}
    assert set(train["deps"]) == {"step.py", "build/prep.txt"}
    assert train["outs"]["build/model.txt"]["digest"].startswith("sha256:")
    ws.reset_log()
    noop = ws.canon("apply")
    assert noop.returncode == 0 and ws.ran() == []


def test_param_change_says_why_and_reverting_restores_from_run_cache(ws: Workspace) -> None:
    ws.declare(CHAIN)
    assert ws.canon("apply").returncode == 0
    ws.write({"params.yaml": "a: 2\nb: {x: 1, y: two}\n"})
    st = ws.canon("status")
    assert st.returncode == 1
    assert "PARAM_CHANGED a 1 -> 2" in st.stdout
    assert "stage.prep" not in st.stdout
    ws.reset_log()
    assert ws.canon("apply").returncode == 0
    assert ws.ran() == ["train", "report"]
    assert ws.read("build/model.txt") == "in\n2"
    ws.write({"params.yaml": "a: 1\nb: {x: 1, y: two}\n"})
    st = ws.canon("status")
    assert "RUN_CACHED" in st.stdout
    ws.reset_log()
    result = ws.canon("apply")
    assert result.returncode == 0
    assert ws.ran() == []  # nothing executed: outputs came back from the cache
    assert "restored" in result.stdout
    assert ws.read("build/model.txt") == "in\n1"
    assert ws.canon("status").returncode == 0


def test_early_cutoff_when_upstream_output_is_unchanged(ws: Workspace) -> None:
    ws.declare(CHAIN)
    assert ws.canon("apply").returncode == 0
    # a new dep of prep that does not change prep's output
    ws.write({"unused.txt": "x"})
    stages = dict(CHAIN)
    stages["prep"] = {**step("build/prep.txt", "input.txt"), "deps": ["step.py", "input.txt", "unused.txt"]}
    ws.declare(stages)
    ws.reset_log()
    result = ws.canon("apply")
    assert result.returncode == 0, result.stdout
    assert ws.ran() == ["prep"]
    assert "up-to-date" in result.stdout


def test_independent_stages_run_in_parallel(ws: Workspace) -> None:
    stages = {n: step(f"build/{n}.txt", "input.txt", env={"STEP_SLEEP": "1.5"}) for n in ("a", "b")}
    ws.declare(stages)
    t0 = time.monotonic()
    assert ws.canon("apply", "-j", "2").returncode == 0
    elapsed = time.monotonic() - t0
    events: dict[str, dict[str, float]] = {}
    for line in ws.read("ran.log").splitlines():
        name, what, when = line.split()
        events.setdefault(name, {})[what] = float(when)
    # the two stages' run intervals overlap
    assert events["a"]["start"] < events["b"]["end"] and events["b"]["start"] < events["a"]["end"]
    assert elapsed < 2 * 1.5 + 2


def test_params_never_become_shell_code(ws: Workspace) -> None:
    ws.write({"params.yaml": 'evil: "x; touch pwned; $(touch pwned2)"\n'})
    ws.declare({"echo": {"cmd": [sys.executable, "-c",
                                 "import sys; open('build/args.json','w').write(__import__('json').dumps(sys.argv[1:]))",
                                 "--v", "${params.evil}"],
                         "params": ["evil"], "outs": ["build/args.json"]},
                "sh": {"cmd": "printf '%s' ${params.evil} > build/sh.txt", "shell": True,
                       "params": ["evil"], "outs": ["build/sh.txt"]}})
    result = ws.canon("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(ws.read("build/args.json")) == ["--v", "x; touch pwned; $(touch pwned2)"]
    assert ws.read("build/sh.txt") == "x; touch pwned; $(touch pwned2)"
    assert not (ws.root / "pwned").exists() and not (ws.root / "pwned2").exists()


def test_saved_plan_applies_or_is_refused_when_stale(ws: Workspace) -> None:
    ws.declare(CHAIN)
    assert ws.canon("plan", "--out", "p.json").returncode == 0
    ws.write({"input.txt": "changed\n"})
    stale = ws.canon("apply", "p.json")
    assert stale.returncode == 2
    assert "run `canon plan` again" in stale.stderr
    assert not (ws.root / "build/prep.txt").exists()
    assert ws.canon("plan", "--out", "p.json").returncode == 0
    ok = ws.canon("apply", "p.json")
    assert ok.returncode == 0, ok.stderr
    assert ws.read("build/prep.txt") == "changed\n"


def test_failure_skips_downstream_and_keep_going_runs_the_rest(ws: Workspace) -> None:
    ws.declare({**CHAIN, "side": step("build/side.txt", "input.txt")})
    failed = ws.canon("apply", "-j", "1", env={"STEP_FAIL": "prep"})
    assert failed.returncode == 1
    assert "failed" in failed.stdout and "exit code 3" in failed.stdout
    assert not (ws.root / "build/report.txt").exists()
    ws.reset_log()
    kept = ws.canon("apply", "-k", "-j", "1", env={"STEP_FAIL": "prep"})
    assert kept.returncode == 1
    assert "side" in ws.ran()
    lock = yaml.safe_load(ws.read("canon.lock"))
    assert set(lock["profiles"]["default"]["stages"]) == {"side"}
    assert ws.canon("apply").returncode == 0


def test_hand_edited_output_is_restored_and_kept(ws: Workspace) -> None:
    ws.declare(CHAIN)
    assert ws.canon("apply").returncode == 0
    ws.write({"build/model.txt": "my edits"})
    st = ws.canon("status")
    assert "OUTPUT_MODIFIED build/model.txt" in st.stdout
    result = ws.canon("apply")
    assert result.returncode == 0
    assert ws.read("build/model.txt") == "in\n1"
    assert "had unsaved changes; kept in the cache as sha256:" in result.stdout


def test_second_apply_names_the_holder_and_dead_holder_is_taken_over(ws: Workspace) -> None:
    ws.declare({"slow": step("build/slow.txt", "input.txt", env={"STEP_SLEEP": "30"})})
    first = ws.popen("apply")
    try:
        deadline = time.monotonic() + 20
        while "slow start" not in (ws.root / "ran.log").read_text() if (ws.root / "ran.log").exists() else True:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = ws.canon("apply")
        assert second.returncode == 3
        assert f"pid {first.pid}" in second.stderr
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    took_over = ws.canon("apply", env={"STEP_SLEEP": "0"})
    # the env var is not part of the declaration, so the slow stage runs quickly now
    assert took_over.returncode == 0, took_over.stderr
    assert "died without finishing" in took_over.stdout
    assert "orphaned" in took_over.stdout


def test_json_lines_and_ledger(ws: Workspace) -> None:
    ws.declare(CHAIN)
    result = ws.canon("apply", "--json")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "ApplyStarted" and kinds[-1] == "ApplyFinished"
    assert [e["name"] for e in events if e["event"] == "StageFinished"] == ["prep", "train", "report"]
    log = json.loads(ws.canon("log", "--json").stdout)
    assert log[0]["status"] == "succeeded"
    assert [s["stage"] for s in log[0]["stages"]] == ["prep", "train", "report"]
    assert all(s["key"].startswith("sha256:") for s in log[0]["stages"])


def test_dag_formats(ws: Workspace) -> None:
    ws.declare(CHAIN)
    assert ws.canon("dag").stdout.splitlines()[1].startswith("train <- prep")
    assert "prep --> train" in ws.canon("dag", "--format", "mermaid").stdout
    assert '"train" -> "report";' in ws.canon("dag", "--format", "dot").stdout


def test_user_mistake_is_one_clear_error_without_traceback(ws: Workspace) -> None:
    ws.write({"canon.yaml": "project: t\nstages:\n  a:\n    cmd: [echo]\n    dpes: [x]\n"})
    result = ws.canon("status")
    assert result.returncode == 2
    assert "canon.yaml:5" in result.stderr and "did you mean" in result.stderr
    assert "Traceback" not in result.stderr
    missing = ws.canon("-C", "/", "status")
    assert missing.returncode == 2 and "canon init" in missing.stderr


def test_schema_is_json_schema(ws: Workspace) -> None:
    schema = json.loads(ws.canon("schema").stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"project", "stages", "profiles", "data"} <= set(schema["properties"])
