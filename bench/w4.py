#!/usr/bin/env python3
"""W4: experiments, canon vs DVC, on ../shared/bench/gen_exp_project.py's one-stage project.

    python bench/w4.py --md /tmp/w4.md [--dvc-md FILE] [--runs 5] [--work DIR]

canon rows, each one whole command timed with time.perf_counter() (median of --runs):
  - `canon exp run -S lr=X` (a new lr each run, so the stage really runs) and the
    reference `python3 train.py` in the same project: the difference is the overhead;
  - 8 x `canon exp run --queue` + `canon exp queue start -j 2`, end to end (one script);
  - `canon exp show --json` with 100 and 1,000 experiments (the extra experiments are
    real commits on refs/canon/exps/, made with `git commit-tree` from a real one);
  - the weather example (real training): 4 queued experiments with -j 1 and -j 2.
DVC rows come from ../shared/bench/run_dvc_bench.py --only w4 (`--dvc-md`), run on the
same machine in the same session: W4 of that script is the same workload.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(REPO), "shared", "bench")
BIN = os.path.dirname(sys.executable)
ENV = dict(
    os.environ,
    PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
    GIT_AUTHOR_NAME="bench",
    GIT_AUTHOR_EMAIL="bench@example.com",
    GIT_COMMITTER_NAME="bench",
    GIT_COMMITTER_EMAIL="bench@example.com",
    NO_COLOR="1",
)
CANON = os.path.join(BIN, "canon")
ROWS: list[tuple[str, str, float, float, float, int]] = []

CANON_YAML = """project: w4
params: params.yaml
stages:
  train:
    cmd: python3 train.py
    deps: [train.py, data/train.csv]
    params: [lr, epochs]
    outs: [model.json]
    metrics: [metrics.json]
"""


def sh(cmd: str, cwd: str) -> str:
    return subprocess.run(
        cmd, shell=True, cwd=cwd, env=ENV, check=True, capture_output=True, text=True
    ).stdout


def timed(cmd: str, cwd: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, shell=True, cwd=cwd, env=ENV, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{proc.stdout}\n{proc.stderr}")
    return took


def measure(label: str, cmd: str, cwd: str, runs: int, prep=None, warmup: int = 0) -> float:
    for _ in range(warmup):
        if prep:
            prep()
        timed(cmd() if callable(cmd) else cmd, cwd)
    times = []
    for _ in range(runs):
        if prep:
            prep()
        times.append(timed(cmd() if callable(cmd) else cmd, cwd))
    med = statistics.median(times)
    shown = cmd() if callable(cmd) else cmd
    ROWS.append((label, shown, med, min(times), max(times), runs))
    print(f"{label:<60} {med:7.3f} s  ({min(times):.3f}-{max(times):.3f}, n={runs})", flush=True)
    return med


def project(work: str, name: str) -> str:
    root = os.path.join(work, name)
    os.makedirs(root)
    sh(f"{sys.executable} {SHARED}/gen_exp_project.py --out . && rm -f dvc.yaml", root)
    with open(os.path.join(root, "canon.yaml"), "w") as f:
        f.write(CANON_YAML)
    with open(os.path.join(root, ".gitignore"), "w") as f:
        f.write(".canon/\nmodel.json\nmetrics.json\n")
    sh(f"git init -q && git add -A && git commit -qm w4 && {CANON} apply >/dev/null", root)
    return root


def fill_experiments(root: str, n: int) -> None:
    """Clone a real experiment's commit into ``n`` experiments with varied params/metrics."""
    if not any(line for line in sh("git for-each-ref refs/canon/exps/", root).splitlines()):
        sh(f"{CANON} exp run -S lr=0.02 --name seed", root)
    have = len(sh("git for-each-ref refs/canon/exps/", root).splitlines())
    seed = sh("git rev-parse refs/canon/exps/seed", root).strip()
    tree = sh(f"git rev-parse {seed}^{{tree}}", root).strip()
    parent = sh(f"git rev-parse {seed}^", root).strip()
    body = sh(f"git cat-file commit {seed}", root).split("\n\n", 1)[1].splitlines()
    summary = json.loads(next(line for line in body if line.startswith("{")))
    lines = []
    for i in range(have, n):
        s = dict(
            summary,
            params={"lr": round(0.001 * (i + 1), 6), "epochs": 100 + i % 7},
            overrides={"lr": round(0.001 * (i + 1), 6)},
            metrics={"mse": 1.0 / (i + 1), "r2": 1 - 1.0 / (i + 1)},
        )
        msg = f"canon exp b{i:05d}\n\n{json.dumps(s, sort_keys=True)}\n"
        oid = subprocess.run(
            ["git", "commit-tree", tree, "-p", parent],
            cwd=root,
            env=ENV,
            input=msg,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        lines.append(f"create refs/canon/exps/b{i:05d} {oid}\n")
    subprocess.run(
        ["git", "update-ref", "--stdin"],
        cwd=root,
        env=ENV,
        input="".join(lines),
        text=True,
        check=True,
    )


def weather_setup(wx: str, canon: str) -> str:
    """The set-up of the weather rows: the example committed (`canon init` may have done
    it), its stages applied and the lock committed. Stages only: the example may declare
    images, and building them (pip wheels for the base) is not what these rows measure;
    experiments apply stages only anyway."""
    import yaml

    with open(os.path.join(wx, "canon.yaml")) as f:
        stages = " ".join(yaml.safe_load(f)["stages"])
    return (
        "git add -A && { git diff --cached --quiet || git commit -qm weather; } && "
        f"{canon} apply {stages} >/dev/null && git add -A && git commit -qm lock"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--md", default=None)
    ap.add_argument("--dvc-md", default=None, help="run_dvc_bench.py --only w4 --md output")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--slow-runs", type=int, default=3)
    ap.add_argument("--work", default=None)
    ap.add_argument("--skip-weather", action="store_true")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="canon-w4-")
    k = [0]

    def lr() -> str:
        k[0] += 1
        return f"0.{time.time_ns() % 10**9:09d}{k[0]}"

    root = project(work, "one")
    measure(
        "canon exp run -S lr=X (one experiment, stage runs)",
        lambda: f"canon exp run -S lr={lr()}",
        root,
        a.runs,
        warmup=1,
    )
    measure("ref: python3 train.py", "python3 train.py", root, a.runs, warmup=1)

    q = project(work, "queue")
    script = os.path.join(work, "queue8.sh")
    with open(script, "w") as f:
        f.write(
            "set -e\nfor i in 1 2 3 4 5 6 7 8; do canon exp run --queue -S lr=0.0$(date +%N)"
            " -S epochs=$((100+i)) >/dev/null; done\ncanon exp queue start -j 2 >/dev/null\n"
        )
    measure(
        "8 x exp run --queue + exp queue start -j 2, end to end", f"bash {script}", q, a.slow_runs
    )

    show = project(work, "show")
    for n in (100, 1000):
        fill_experiments(show, n)
        measure(
            f"canon exp show --json ({n} exps)",
            "canon exp show --json >/dev/null",
            show,
            a.runs,
            warmup=1,
        )
    measure(
        f"canon exp show ({1000} exps, table, --sort r2 --desc)",
        "canon exp show --sort r2 --desc >/dev/null",
        show,
        a.runs,
        warmup=1,
    )

    if not a.skip_weather:
        wx = os.path.join(work, "weather")
        sh(f"{CANON} init {wx} --example weather >/dev/null", work)
        sh(weather_setup(wx, CANON), wx)
        c = [0]

        def queue4() -> None:
            for _ in range(4):
                c[0] += 1
                sh(f"canon exp run --queue -S train.C=0.{c[0]:04d}1 >/dev/null", wx)

        for jobs in (1, 2):
            measure(
                f"weather: 4 queued experiments (train+evaluate), queue start -j {jobs}",
                f"canon exp queue start -j {jobs} >/dev/null",
                wx,
                a.slow_runs,
                prep=queue4,
            )

    lines = ["| measurement | command | median s | min-max s | n |", "|---|---|---|---|---|"]
    for label, cmd, med, lo, hi, n in ROWS:
        lines.append(f"| {label} | `{cmd}` | {med:.3f} | {lo:.3f}-{hi:.3f} | {n} |")
    table = "\n".join(lines)
    print(table)
    if a.md:
        dvc = "(not run)"
        if a.dvc_md and os.path.exists(a.dvc_md):
            with open(a.dvc_md) as f:
                dvc = f.read()
        load = os.getloadavg()
        with open(a.md, "w") as f:
            f.write(
                f"# W4: experiments (canon vs DVC)\n\nMeasured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
                f" on {os.cpu_count()} CPUs (load average at the end {load[0]:.2f}), Python "
                f"{sys.version.split()[0]}. Reproduce: `python bench/w4.py --md "
                f"/tmp/w4.md --dvc-md DVC.md` after `python3 "
                f"../shared/bench/run_dvc_bench.py --only w4 --md DVC.md`.\n\n"
                f"## canon\n\n{table}\n\n## DVC 3.67 (same workload, same machine)\n\n{dvc}\n"
            )
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)



# --------------------------------------------------------------- bench/run.py --only w4


def w4(b: Any, ns: dict[str, Any]) -> None:
    """W4 inside bench/run.py (``--only w4``): canon and DVC interleaved, rows with targets.

    ``ns`` is run.py's namespace (Bench helpers, targets). Rows: the overhead of one
    ``exp run`` over ``python3 train.py`` (target < 0.2 s); 8 queued experiments with 2
    workers end to end (target 5x DVC); ``exp show --json`` with 100 (both tools) and 1,000
    (canon) experiments (target < 0.5 s); the weather example's 4 queued experiments with
    ``-j 1`` and ``-j 2`` (target 1.8x, canon only). DVC's 100 experiments are real
    ``dvc exp run``s (about 1 s each): the whole workload takes ~7 min (2 cores, busy).
    """
    a, wl = b.a, "W4"
    sh, Spec, Target = ns["sh"], ns["Spec"], ns["Target"]
    ratio_at_least, under, ref_of = ns["ratio_at_least"], ns["under"], ns["ref_of"]
    canon, dvc = b.canon, b.dvc
    gen = f"{sys.executable} {SHARED}/gen_exp_project.py --out ."
    n_exps = 8 if a.smoke else 100

    def canon_project(kind: str) -> str:
        d = b.fresh_dir(kind)
        os.makedirs(d)
        sh(f"{gen} && rm -f dvc.yaml", d)
        with open(os.path.join(d, "canon.yaml"), "w") as f:
            f.write(CANON_YAML)
        with open(os.path.join(d, ".gitignore"), "w") as f:
            f.write(".canon/\nmodel.json\nmetrics.json\n")
        sh(f"git init -q && git add -A && git commit -qm w4 && {canon} apply >/dev/null", d)
        return d

    def dvc_project(kind: str) -> str:
        d = b.copy_of(b.dvc_template(), kind)
        sh(f"{gen} && {dvc} add -q data/train.csv && git add -A && git commit -qm exp && "
           f"{dvc} repro -q && git add -A && git commit -qm base", d)
        return d

    # 1. one experiment vs the stage run directly (a new lr each time: the stage runs)
    crepo, drepo = canon_project("w4-canon"), dvc_project("w4-dvc")
    c_run, d_run, ref = b.interleaved(wl, [
        Spec("canon exp run -S lr=X (stage runs)",
             ["bash", "-c", f"exec {canon} exp run -S lr=0.0$(date +%N)"], cwd=crepo),
        Spec("dvc exp run -S lr=X (stage runs)",
             ["bash", "-c", f"exec {dvc} exp run -q -S lr=0.0$(date +%N)"], cwd=drepo),
        Spec("ref: python3 train.py", ["bash", "-c", "exec python3 train.py"], cwd=crepo),
    ], runs=a.runs)

    def overhead(r: Any) -> bool | None:
        base = ref_of(r, "ref: python3")
        if r.canon is None or not r.canon.ok or base is None:
            return None
        return bool(r.canon.median - base.median < 0.2)

    b.row(wl, "`exp run` of a 1-stage project (overhead = minus the ref)", c_run, d_run, [ref],
          Target("overhead < 0.2 s", overhead))
    sh("git checkout -q -- params.yaml metrics.json dvc.lock", drepo)

    # 2. 8 queued experiments, 2 workers, from the first --queue to the last result
    cq, dq = canon_project("w4-canon-queue"), dvc_project("w4-dvc-queue")
    cscript, dscript = b.p("w4_canon_queue8.sh"), b.p("w4_dvc_queue8.sh")
    with open(cscript, "w") as f:
        f.write(f"set -e\nfor i in 1 2 3 4 5 6 7 8; do {canon} exp run --queue "
                "-S lr=0.0$(date +%N) -S epochs=$((100+i)) >/dev/null; done\n"
                f"{canon} exp queue start -j 2 >/dev/null\n")
    with open(dscript, "w") as f:
        # DVC's queue workers start `dvc` from PATH: put its venv last (python3 stays ours)
        f.write(f"set -e\nexport PATH=\"$PATH:{os.path.dirname(dvc)}\"\n"
                f"for i in 1 2 3 4 5 6 7 8; do {dvc} exp run --queue -q "
                "-S lr=0.0$(date +%N) -S epochs=$((100+i)); done\n"
                f"{dvc} queue start -j 2 -q >/dev/null 2>&1\n"
                f'while [ "$({dvc} queue status 2>/dev/null | grep -cE \'Success|Failed\')" '
                "-lt 8 ]; do sleep 0.5; done\n")

    def dvc_idle() -> str:
        for _ in range(120):
            if "0 active, 0 idle" in sh(f"{dvc} queue status", dq, check=False):
                break
            time.sleep(1)
        sh(f"{dvc} queue remove --all", dq, check=False)
        return dq

    c_q, d_q = b.interleaved(wl, [
        Spec("8 x canon exp run --queue + queue start -j 2", ["bash", cscript], cwd=cq),
        Spec("8 x dvc exp run --queue + queue start -j 2 + poll", ["bash", dscript],
             prep=dvc_idle),
    ], runs=a.slow_runs, warmup=0)
    b.row(wl, "8 queued experiments, 2 workers, end to end", c_q, d_q, [], ratio_at_least(5))
    dvc_idle()

    # 3. exp show with many experiments (canon's extra ones are real commits on refs)
    cs, ds = canon_project("w4-canon-show"), dvc_project("w4-dvc-show")
    fill_experiments(cs, n_exps)
    for i in range(n_exps):
        sh(f"{dvc} exp run -q -S lr=0.0{i + 1:04d}1 -S epochs={50 + i % 7}", ds)
    c_show, d_show = b.interleaved(wl, [
        Spec(f"canon exp show --json ({n_exps} exps)", [canon, "exp", "show", "--json"], cwd=cs),
        Spec(f"dvc exp show --json ({n_exps} exps)",
             [dvc, "exp", "show", "--no-pager", "--json"], cwd=ds),
    ], runs=a.runs)
    b.row(wl, f"`exp show --json`, {n_exps} experiments", c_show, d_show, [], under(0.5))
    big = 10 * n_exps
    fill_experiments(cs, big)
    (c_big,) = b.interleaved(wl, [
        Spec(f"canon exp show --json ({big} exps)", [canon, "exp", "show", "--json"], cwd=cs),
    ], runs=a.runs)
    b.row(wl, f"`exp show --json`, {big} experiments (DVC: see the row above)", c_big, None,
          [], under(0.5))

    # 4. real training: the weather example, 4 queued experiments, 1 vs 2 workers
    wx = b.fresh_dir("w4-weather")
    sh(f"{canon} init {wx} --example weather >/dev/null")
    sh(weather_setup(wx, canon), wx)
    c = [0]

    def queue4() -> str:
        for _ in range(4):
            c[0] += 1
            sh(f"{canon} exp run --queue -S train.C=0.{c[0]:04d}1 >/dev/null", wx)
        return wx

    j1, j2 = b.interleaved(wl, [
        Spec(f"weather: 4 queued experiments, queue start -j {j}",
             [canon, "exp", "queue", "start", "-j", str(j)], prep=queue4)
        for j in (1, 2)
    ], runs=a.slow_runs, warmup=0)

    def speedup(r: Any) -> bool | None:
        one = ref_of(r, "weather: 4 queued experiments, queue start -j 1")
        if one is None or r.canon is None or not r.canon.ok:
            return None
        return bool(one.median / r.canon.median >= 1.8)

    b.row(wl, "weather example, 4 experiments: -j 2 (ref: -j 1)", j2, None, [j1],
          Target("-j 2 ≥1.8x faster than -j 1", speedup))


if __name__ == "__main__":
    main()
