#!/usr/bin/env python3
"""canon vs DVC on the same workloads, in one run: medians, ratios, targets.

    python bench/run.py [--md docs/benchmarks.md] [--smoke] [--only w3,startup,w2,w1,w4,w5]
        [--runs 5] [--slow-runs 3] [--files 50000] [--big-mib 1024] [--stages 100]
        [--work DIR] [--canon PATH] [--dvc-venv DIR] [--[no-]fill-pagecache] [--keep]

`make bench` runs `python bench/run.py --md docs/benchmarks.md`.

Workloads (generators in bench/workloads/, copied from the shared workloads):
  W3  a 100-stage chain of `python3 -c` stages (and a layered variant): first run,
      no-op status, no-op apply, apply after one mid-chain param change.
  W2  50,000 small files: first pin/add, status with nothing changed, after 10 changes.
  W1  one 1 GiB file: first pin/add, first hash, against sha256sum.
  startup: `canon --help` and `canon status` on the 100-stage chain, absolutely.
  W4  experiments (bench/w4.py, not in the default list: ~7 min with DVC's 100
      experiments): exp run overhead, 8 queued with 2 workers, exp show, weather -j 1/2.
  W5  push/pull to a local and an S3 (moto) remote (bench/w5.py, not in the default list).
  W6  images: the example's base and model (bench/images.py).
  W7  the model server and rollouts under load (bench/w7.py, not in the default list;
      canon only): /predict p50/p99 and requests/s, failed requests during a rollout
      and an automatic rollback.

Every figure is one whole command started with subprocess and timed with
time.perf_counter(); peak RSS comes from os.wait4(). Set-up (fresh copies, param
changes, mutations) runs untimed right before each timed command. "Fresh"
measurements get a new workspace per run (real copies, never hard links) and no
warm-up; steady-state ones get one unrecorded warm-up run. The medians are
reported with the ratio DVC/canon ("x times faster"). DVC lives in its own
virtualenv (bench/.dvc-venv, created with `pip install dvc` when missing); it is
never a dependency of canon.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WL = os.path.join(HERE, "workloads")
MARKER = ".canon-bench-work"
REPRODUCE = "make bench  # = python bench/run.py --md docs/benchmarks.md"

# Stage commands run `python3` from PATH: put the interpreter running this script
# first, so both tools run the same python3 (and not, say, a slow pyenv shim).
# Bytecode: users run canon and DVC with compiled .pyc files (pip compiles on install).
# canon here is an editable install whose src/ may have none, and a session may set
# PYTHONDONTWRITEBYTECODE; so every measured command gets a bytecode cache under
# bench/results/ (git-ignored), compiled before measuring (see prime_bytecode).
PYCACHE = os.path.join(HERE, "results", "pycache")
ENV = dict(
    {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    PYTHONPYCACHEPREFIX=os.environ.get("PYTHONPYCACHEPREFIX") or PYCACHE,
    PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    DVC_NO_ANALYTICS="1",
    GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
    GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com",
)


# --------------------------------------------------------------------- running


def sh(cmd: str, cwd: str | None = None, check: bool = True) -> str:
    """An untimed set-up step."""
    r = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, check=False)
    if check and r.returncode:
        raise SetupError(f"set-up failed ({r.returncode}): {cmd}\n{r.stdout[-2000:]}")
    return r.stdout


class SetupError(Exception):
    pass


@dataclass
class Once:
    wall: float
    rss_mib: float
    code: int
    err: str
    cpu: float = 0.0  # user + system seconds of the command and the children it waited for


def time_once(argv: Sequence[str], cwd: str, timeout: float) -> Once:
    """Run argv once; wall time, peak RSS (os.wait4), exit code, stderr tail."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(list(argv), cwd=cwd, env=ENV, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read()[-3000:].decode(errors="replace")
    if killed.is_set():
        tail = f"timed out after {timeout:.0f} s\n" + tail
    return Once(wall, ru.ru_maxrss / 1024.0, code, tail, ru.ru_utime + ru.ru_stime)


@dataclass
class Stat:
    """A measured command: medians over the recorded runs, or the error that stopped it."""

    label: str
    argv: list[str]
    cwd: str
    walls: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)
    error: str | None = None
    cpus: list[float] = field(default_factory=list)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpus) if self.cpus else float("nan")

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.walls)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def peak(self) -> float:
        return statistics.median(self.peaks)

    def cmd(self) -> str:
        return " ".join(_quote(a) for a in self.argv)


def _quote(a: str) -> str:
    if a and all(c.isalnum() or c in "-_./=:,@+" for c in a):
        return a
    return "'" + a.replace("'", "'\\''") + "'"


@dataclass
class Spec:
    """One command to measure: run in `cwd`, or in the folder `prep()` returns (untimed)."""

    label: str
    argv: Sequence[str]
    cwd: str | None = None
    prep: Callable[[], str] | None = None
    ok: Sequence[int] = (0,)
    settle: bool = False  # after prep, wait for the machine to settle (see settle())


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.root = os.path.abspath(a.work)
        self.canon = a.canon
        self.dvc = a.dvc
        self.stats: list[Stat] = []
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.sections: list[tuple[str, list[str]]] = []  # (title, markdown lines), no rows
        self.n = 0
        self.dvc_version = ""
        self.chain_repos: tuple[str, str] | None = None  # W3's steady (canon, dvc) repos

    # paths and workspaces -------------------------------------------------
    def p(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def fresh_dir(self, kind: str) -> str:
        self.n += 1
        d = self.p("runs", kind, f"r{self.n:04d}")
        os.makedirs(os.path.dirname(d), exist_ok=True)
        return d

    def gen(self, script: str, out: str, *args: object) -> None:
        if not os.path.exists(os.path.join(out, ".done")):
            os.makedirs(out, exist_ok=True)
            sh(f"{sys.executable} {WL}/{script} --out {out} " + " ".join(map(str, args)))
            open(os.path.join(out, ".done"), "w").close()

    def dvc_template(self) -> str:
        t = self.p("tmpl", "dvc")
        if not os.path.isdir(t):
            os.makedirs(t)
            d = self.dvc
            sh(f"git init -q && {d} init -q && {d} config --local core.analytics false"
               f" && {d} config --local core.check_update false && git commit -qm init", t)
        return t

    def dvc_repo(self, kind: str, files: dict[str, str] | None = None) -> str:
        """A fresh DVC repo (copy of the template) with `files` copied in and committed."""
        d = self.fresh_dir(kind)
        shutil.copytree(self.dvc_template(), d, symlinks=True)
        if files:
            for name, src in files.items():
                _copy(src, os.path.join(d, name))
            sh("git add -A && git commit -qm workload", d)
        return d

    def canon_repo(self, kind: str, canon_yaml: str, ignore: Sequence[str],
                   files: dict[str, str] | None = None) -> str:
        """A fresh git repo holding canon.yaml, params.yaml and `files`, committed."""
        d = self.fresh_dir(kind)
        os.makedirs(d)
        for name, src in (files or {}).items():
            _copy(src, os.path.join(d, name))
        with open(os.path.join(d, "canon.yaml"), "w") as f:
            f.write(canon_yaml)
        if not os.path.exists(os.path.join(d, "params.yaml")):
            with open(os.path.join(d, "params.yaml"), "w") as f:
                f.write("{}\n")
        with open(os.path.join(d, ".gitignore"), "w") as f:
            f.write("\n".join([".canon/", *ignore]) + "\n")
        sh("git init -q && git add -A && git commit -qm workload", d)
        return d

    def copy_of(self, template: str, kind: str, extra: dict[str, str] | None = None) -> str:
        d = self.fresh_dir(kind)
        shutil.copytree(template, d, symlinks=True)
        for name, src in (extra or {}).items():
            _copy(src, os.path.join(d, name))
        return d

    # measuring -------------------------------------------------------------
    def measure(self, wl: str, label: str, argv: Sequence[str], *, cwd: str | None = None,
                prep: Callable[[], str] | None = None, runs: int = 5, warmup: int = 1,
                ok: Sequence[int] = (0,)) -> Stat:
        return self.interleaved(wl, [Spec(label, argv, cwd, prep, ok)], runs=runs,
                                warmup=warmup)[0]

    def interleaved(self, wl: str, specs: Sequence[Spec], *, runs: int = 5,
                    warmup: int = 1) -> list[Stat]:
        """Measure several commands in rounds, one run of each per round, the order
        reversed every other round (A B, B A, ...): a change of load on the machine
        hits canon and DVC alike instead of whichever happened to run then."""
        stats = [Stat(s.label, list(s.argv), s.cwd or "") for s in specs]
        for i in range(warmup + runs):
            order = list(zip(specs, stats, strict=True))
            for spec, st in order if i % 2 == 0 else order[::-1]:
                if st.error is None:
                    self._run_one(wl, spec, st, record=i >= warmup)
        for st in stats:
            self.stats.append(st)
            if st.ok:
                print(f"{wl:7} {st.label:52} median {st.median:8.3f} s  "
                      f"[{min(st.walls):.3f}-{max(st.walls):.3f}]  cpu {st.cpu:7.3f} s  "
                      f"peak {st.peak:6.0f} MiB  n={len(st.walls)}", flush=True)
            else:
                print(f"{wl:7} {st.label:52} FAILED  {st.error}", flush=True)
        return stats

    def _run_one(self, wl: str, spec: Spec, st: Stat, *, record: bool) -> None:
        try:
            d = spec.prep() if spec.prep else spec.cwd
        except (SetupError, OSError) as exc:
            st.error = f"set-up failed: {exc}"
            return
        assert d is not None
        st.cwd = d
        os.sync()
        if spec.settle:
            settle()
        r = time_once(spec.argv, d, self.a.timeout)
        if r.code not in spec.ok:
            last = [ln for ln in r.err.strip().splitlines() if ln.strip()]
            st.error = f"exit {r.code}: " + (last[-1] if last else "(no stderr)")
            self.notes.append(f"{wl} `{st.cmd()}` in {d} failed with exit {r.code}:\n\n"
                              "```text\n" + r.err.strip()[-1500:] + "\n```")
            return
        if record:
            st.walls.append(r.wall)
            st.peaks.append(r.rss_mib)
            st.cpus.append(r.cpu)

    def canon_cmd(self, *args: str) -> list[str]:
        return [self.canon, *args]

    def dvc_cmd(self, *args: str) -> list[str]:
        return [self.dvc, *args]

    def check(self, wl: str, what: str, argv: Sequence[str], cwd: str, expect: int = 0) -> bool:
        """An untimed sanity check (e.g. `canon status` is clean after apply)."""
        r = subprocess.run(list(argv), cwd=cwd, env=ENV, capture_output=True, text=True,
                           check=False)
        if r.returncode != expect:
            out = (r.stdout + r.stderr).strip()[-1500:]
            self.notes.append(f"{wl} check failed: {what}: `{' '.join(argv)}` exited "
                              f"{r.returncode}, expected {expect}:\n\n```text\n{out}\n```")
            print(f"{wl:7} CHECK FAILED: {what} (exit {r.returncode})", flush=True)
            return False
        return True

    def row(self, wl: str, label: str, canon: Stat | None, dvc: Stat | None,
            refs: Sequence[Stat] = (), target: Target | None = None) -> None:
        self.rows.append(Row(wl, label, canon, dvc, list(refs), target))


def _copy(src: str, dst: str) -> None:
    if os.path.isdir(src):
        shutil.copytree(src, dst, symlinks=True)
    else:
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        shutil.copyfile(src, dst)


def fill_pagecache(root: str) -> None:
    """On VMs that hand free pages back to the host, writing into never-touched memory
    costs seconds per GiB. Filling free memory with a clean cached file first makes
    write-heavy runs reuse warm pages, as on a long-running machine (same for both)."""
    path = os.path.join(root, "fill.bin")
    if os.path.exists(path):
        os.remove(path)
    os.sync()
    with open("/proc/meminfo") as f:
        free_kb = int(next(ln.split()[1] for ln in f if ln.startswith("MemFree:")))
    mib = free_kb // 1024 - 800
    if mib > 256:
        print(f"(filling the page cache with {mib} MiB)", flush=True)
        sh(f"head -c {mib}M /dev/zero > {path} && sync")


# ------------------------------------------------------------------ targets


@dataclass
class Target:
    text: str
    check: Callable[[Row], bool | None]


@dataclass
class Row:
    wl: str
    label: str
    canon: Stat | None
    dvc: Stat | None
    refs: list[Stat]
    target: Target | None

    def ratio(self) -> float | None:
        if self.canon and self.dvc and self.canon.ok and self.dvc.ok and self.canon.median > 0:
            return self.dvc.median / self.canon.median
        return None

    def met(self) -> str:
        if self.target is None:
            return ""
        if self.canon is not None and not self.canon.ok:
            return "no (canon failed)"
        try:
            v = self.target.check(self)
        except (ValueError, statistics.StatisticsError):
            v = None
        return "n/a" if v is None else ("**yes**" if v else "**no**")


def ratio_at_least(x: float) -> Target:
    def check(r: Row) -> bool | None:
        q = r.ratio()
        return None if q is None else q >= x
    return Target(f"≥{x:g}x faster than DVC", check)


def ref_of(r: Row, prefix: str) -> Stat | None:
    return next((s for s in r.refs if s.label.startswith(prefix) and s.ok), None)


def status_target(r: Row) -> bool | None:
    q, git = r.ratio(), ref_of(r, "git status")
    if q is None or git is None or r.canon is None:
        return None
    return q >= 10 and r.canon.median <= 3 * git.median


def hash_target(r: Row) -> bool | None:
    sha = ref_of(r, "sha256sum")
    if sha is None or r.canon is None or not r.canon.ok:
        return None
    return sha.median / r.canon.median >= 0.8


def under(seconds: float) -> Target:
    def check(r: Row) -> bool | None:
        return None if r.canon is None or not r.canon.ok else r.canon.median < seconds
    return Target(f"< {seconds:g} s", check)


# ------------------------------------------------------------------ workloads


def canon_pipeline_yaml(pipeline_json: str) -> str:
    """pipeline.json -> canon.yaml. Each cmd is `python3 -c "<code>"`; canon gets it as
    the argv list ["python3", "-c", "<code>"], so no shell is involved."""
    with open(pipeline_json) as f:
        stages = json.load(f)["stages"]
    lines = ["project: bench", "params: params.yaml", "stages:"]
    pre = 'python3 -c "'
    for s in stages:
        cmd = s["cmd"]
        if not (cmd.startswith(pre) and cmd.endswith('"')) or '"' in cmd[len(pre):-1]:
            raise SetupError(f"unexpected stage command shape: {cmd}")
        argv = ["python3", "-c", cmd[len(pre):-1]]
        lines += [f"  {s['name']}:",
                  f"    cmd: {json.dumps(argv)}",
                  f"    deps: {json.dumps(s['deps'])}",
                  f"    params: {json.dumps(s['params'])}",
                  f"    outs: {json.dumps(s['outs'])}"]
    return "\n".join(lines) + "\n"


def same_outputs(b: Bench, wl: str, a_dir: str, b_dir: str, what: str) -> None:
    """canon and DVC ran the same commands on the same params: outputs must agree."""
    def outs(d: str) -> dict[str, bytes]:
        o = os.path.join(d, "out")
        if not os.path.isdir(o):
            return {}
        res = {}
        for n in sorted(os.listdir(o)):
            if not n.endswith(".txt"):  # DVC also writes out/.gitignore
                continue
            with open(os.path.join(o, n), "rb") as f:
                res[n] = f.read()
        return res
    x, y = outs(a_dir), outs(b_dir)
    if x and x == y:
        print(f"{wl:7} check: canon and DVC outputs identical ({len(x)} files, {what})")
    else:
        diff = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
        b.notes.append(f"{wl} check failed ({what}): canon's out/ differs from DVC's "
                       f"({len(x)} vs {len(y)} files; differing: {', '.join(diff[:5])}…)")
        print(f"{wl:7} CHECK FAILED: outputs differ ({what})", flush=True)


def w3_pipeline(b: Bench, shape: str) -> tuple[str, str, str]:
    """Generate the pipeline; return (source dir, canon template, dvc template)."""
    n = b.a.stages
    src = b.p("src", f"w3{shape}")
    b.gen("gen_pipeline.py", src, "--n", n, "--shape", shape)
    files = {f: os.path.join(src, f) for f in ("input.txt", "params.yaml")}
    ctpl = b.canon_repo(f"tmpl-w3{shape}-canon",
                        canon_pipeline_yaml(os.path.join(src, "pipeline.json")),
                        ["/out/"], files)
    os.makedirs(os.path.join(ctpl, "out"), exist_ok=True)
    dtpl = b.dvc_repo(f"tmpl-w3{shape}-dvc", {**files, "dvc.yaml": os.path.join(src, "dvc.yaml")})
    os.makedirs(os.path.join(dtpl, "out"), exist_ok=True)
    return src, ctpl, dtpl


def w3(b: Bench) -> None:
    a = b.a
    n, wl = a.stages, "W3"
    src, ctpl, dtpl = w3_pipeline(b, "chain")
    last: dict[str, str] = {}

    def fresh(tpl: str, kind: str) -> Callable[[], str]:
        def prep() -> str:
            last[kind] = b.copy_of(tpl, kind)
            return last[kind]
        return prep

    c_first, d_first = b.interleaved(wl, [
        Spec(f"canon apply (first, {n} stages)", b.canon_cmd("apply"),
             prep=fresh(ctpl, "w3-canon")),
        Spec(f"dvc repro (first, {n} stages)", b.dvc_cmd("repro", "-q"),
             prep=fresh(dtpl, "w3-dvc")),
    ], runs=a.slow_runs, warmup=0)
    script = b.p("w3_plain.sh")
    with open(os.path.join(src, "pipeline.json")) as f:
        cmds = [s["cmd"] for s in json.load(f)["stages"]]
    with open(script, "w") as f:
        f.write("set -e\n" + "\n".join(cmds) + "\n")
    ref_dir = b.copy_of(src, "w3-plain")
    plain = b.measure(wl, "ref: the stage cmds in a plain shell", ["bash", script], cwd=ref_dir,
                      runs=a.runs)
    b.row(wl, f"first run, {n}-stage chain (fresh copy)", c_first, d_first, [plain])

    crepo, drepo = last.get("w3-canon"), last.get("w3-dvc")
    if not crepo or not drepo:
        b.notes.append("W3: no workspace left from the first run; steady-state rows skipped")
        return
    sh("git add -A && (git diff --cached --quiet || git commit -qm first)", crepo)
    sh("git add -A && (git diff --cached --quiet || git commit -qm first)", drepo)
    if c_first.ok:
        b.check(wl, "canon status is clean after the first apply", b.canon_cmd("status"), crepo)
        same_outputs(b, wl, crepo, drepo, "first run")

    c_st, d_st = b.interleaved(wl, [
        Spec("canon status (no change)", b.canon_cmd("status"), cwd=crepo),
        Spec("dvc status (no change)", b.dvc_cmd("status"), cwd=drepo),
    ], runs=a.runs)
    b.row(wl, f"no-op status, {n} stages", c_st, d_st, target=ratio_at_least(10))
    c_ap, d_ap = b.interleaved(wl, [
        Spec("canon apply (no change)", b.canon_cmd("apply"), cwd=crepo),
        Spec("dvc repro (no change)", b.dvc_cmd("repro"), cwd=drepo),
    ], runs=a.runs)
    b.row(wl, f"no-op apply / repro, {n} stages", c_ap, d_ap, target=ratio_at_least(10))
    b.chain_repos = (crepo, drepo)

    mid = n // 2

    def bumper(repo: str) -> Callable[[], str]:
        values = iter(range(1, 10**6))  # the same sequence of new values for both tools

        def bump() -> str:
            sh(f"{sys.executable} {WL}/gen_pipeline.py --out . --set p{mid:03d}={next(values)}",
               repo)
            return repo
        return bump

    what = f"p{mid:03d} changed: {n - mid} stages rerun"
    c_pc, d_pc = b.interleaved(wl, [
        Spec(f"canon apply ({what})", b.canon_cmd("apply"), prep=bumper(crepo)),
        Spec(f"dvc repro ({what})", b.dvc_cmd("repro", "-q"), prep=bumper(drepo)),
    ], runs=a.slow_runs)
    b.row(wl, f"after one mid-chain param change ({n - mid} stages rerun)", c_pc, d_pc)
    if c_pc.ok:
        b.check(wl, "canon status is clean after the param-change apply",
                b.canon_cmd("status"), crepo)
        same_outputs(b, wl, crepo, drepo, f"after p{mid:03d} changes")

    # layered: independent stages; canon runs them in parallel, DVC one at a time
    wl = "W3L"
    _, ctpl, dtpl = w3_pipeline(b, "layered")
    c_j2, d_l, c_j1 = b.interleaved(wl, [
        Spec(f"canon apply -j 2 (first, {n} stages layered)", b.canon_cmd("apply", "-j", "2"),
             prep=fresh(ctpl, "w3l-canon")),
        Spec(f"dvc repro (first, {n} stages layered)", b.dvc_cmd("repro", "-q"),
             prep=fresh(dtpl, "w3l-dvc")),
        Spec(f"ref: canon apply -j 1 (first, {n} stages layered)",
             b.canon_cmd("apply", "-j", "1"), prep=fresh(ctpl, "w3l-canon-j1")),
    ], runs=a.slow_runs, warmup=0)
    b.row(wl, f"first run, {n} stages in layers of 10, `canon apply -j 2`", c_j2, d_l, [c_j1])
    if c_j2.ok and "w3l-canon" in last and "w3l-dvc" in last:
        same_outputs(b, wl, last["w3l-canon"], last["w3l-dvc"], "layered first run")


def startup(b: Bench) -> None:
    a, wl = b.a, "Startup"
    repos = b.chain_repos
    c_help, d_help, py = b.interleaved(wl, [
        Spec("canon --help", b.canon_cmd("--help"), cwd=b.root),
        Spec("dvc --help", b.dvc_cmd("--help"), cwd=b.root),
        Spec("ref: python3 -c pass", ["python3", "-c", "pass"], cwd=b.root),
    ], runs=a.runs)
    b.row(wl, "`canon --help`", c_help, d_help, [py], under(0.3))
    if repos is None:
        b.notes.append("Startup: `canon status` needs W3's chain (run with --only w3,startup)")
        return
    c_st, d_st = b.interleaved(wl, [
        Spec(f"canon status ({a.stages}-stage chain, no change)", b.canon_cmd("status"),
             cwd=repos[0]),
        Spec(f"dvc status ({a.stages}-stage chain, no change)", b.dvc_cmd("status"),
             cwd=repos[1]),
    ], runs=a.runs)
    b.row(wl, f"`canon status`, {a.stages}-stage chain", c_st, d_st, [py], under(0.3))


def w2(b: Bench) -> None:
    a, wl = b.a, "W2"
    src = b.p("src", "w2")
    b.gen("gen_manyfiles.py", src, "--n", a.files)
    data = os.path.join(src, "data")
    ctpl = b.canon_repo("tmpl-w2-canon", "project: bench\ndata:\n  files:\n    source: data\n",
                        ["/data/"])
    dtpl = b.dvc_template()
    gtpl = b.p("tmpl", "git")
    if not os.path.isdir(gtpl):
        os.makedirs(gtpl)
        sh("git init -q && git commit -q --allow-empty -m init", gtpl)
    last: dict[str, str] = {}

    def fresh(tpl: str, kind: str) -> Callable[[], str]:
        def prep() -> str:
            last[kind] = b.copy_of(tpl, kind, {"data": data})
            return last[kind]
        return prep

    if a.fill_pagecache:
        fill_pagecache(b.root)
    c_add, d_add, g_add = b.interleaved(wl, [
        Spec(f"canon apply (pin {a.files} files, fresh repo)", b.canon_cmd("apply"),
             prep=fresh(ctpl, "w2-canon"), settle=True),
        Spec(f"dvc add data ({a.files} files, fresh repo)", b.dvc_cmd("add", "-q", "data"),
             prep=fresh(dtpl, "w2-dvc"), settle=True),
        Spec("ref: git add data && git commit (fresh repo)",
             ["bash", "-c", "git add data && git commit -qm data"], prep=fresh(gtpl, "w2-git"),
             settle=True),
    ], runs=a.slow_runs, warmup=0)
    b.row(wl, f"first add of {a.files} files (fresh repo)", c_add, d_add, [g_add],
          ratio_at_least(5))

    crepo, drepo, grepo = last.get("w2-canon"), last.get("w2-dvc"), last.get("w2-git")
    if not (crepo and drepo and grepo):
        b.notes.append("W2: no workspace left from the first add; steady-state rows skipped")
        return
    sh("git add -A && (git diff --cached --quiet || git commit -qm pinned)", crepo)
    sh("git add -A && (git diff --cached --quiet || git commit -qm added)", drepo)
    if c_add.ok:
        b.check(wl, "canon status is clean after pinning", b.canon_cmd("status"), crepo)
    waited = settle()
    print(f"(machine settled after the set-up I/O in {waited:.0f} s)", flush=True)
    c_st, d_st, g_st, s_all = b.interleaved(wl, [
        Spec("canon status (nothing changed)", b.canon_cmd("status"), cwd=crepo),
        Spec("dvc status (nothing changed)", b.dvc_cmd("status"), cwd=drepo),
        Spec("git status (same files committed)", ["git", "status"], cwd=grepo),
        Spec("stat_all.py (os.stat every file)",
             ["python3", os.path.join(WL, "stat_all.py"), "data"], cwd=grepo),
    ], runs=a.runs)
    b.row(wl, f"status, nothing changed ({a.files} files)", c_st, d_st, [g_st, s_all],
          Target("≥10x faster than DVC and ≤3x git status", status_target))

    def mutate(repo: str) -> Callable[[], str]:
        def prep() -> str:
            sh(f"{sys.executable} {WL}/mutate_files.py --out . --n 10", repo)
            return repo
        return prep

    c_st10, d_st10 = b.interleaved(wl, [
        Spec("canon status (10 files changed)", b.canon_cmd("status"), prep=mutate(crepo),
             ok=(0, 1)),
        Spec("dvc status (10 files changed)", b.dvc_cmd("status"), prep=mutate(drepo)),
    ], runs=a.runs)
    b.row(wl, "status after 10 files changed", c_st10, d_st10)
    c_ap10, d_ap10 = b.interleaved(wl, [
        Spec("canon apply (10 files changed)", b.canon_cmd("apply"), prep=mutate(crepo)),
        Spec("dvc add data (10 files changed)", b.dvc_cmd("add", "-q", "data"),
             prep=mutate(drepo)),
    ], runs=a.runs)
    b.row(wl, "add after 10 files changed", c_ap10, d_ap10)
    if c_ap10.ok:
        b.check(wl, "canon status is clean after re-pinning", b.canon_cmd("status"), crepo)


def w1(b: Bench) -> None:
    a, wl = b.a, "W1"
    src = b.p("src", "w1")
    b.gen("gen_bigfile.py", src, "--n", a.big_mib)
    big = os.path.join(src, "big.bin")
    ctpl = b.canon_repo("tmpl-w1-canon", "project: bench\ndata:\n  big:\n    source: big.bin\n",
                        ["/big.bin"])
    dtpl = b.dvc_template()
    last: dict[str, str] = {}

    def fresh(tpl: str, kind: str) -> Callable[[], str]:
        def prep() -> str:
            last[kind] = b.copy_of(tpl, kind, {"big.bin": big})
            return last[kind]
        return prep

    if a.fill_pagecache:
        fill_pagecache(b.root)
    size = f"{a.big_mib} MiB"
    c_add, d_add = b.interleaved(wl, [
        Spec(f"canon apply (pin {size}, fresh repo)", b.canon_cmd("apply"),
             prep=fresh(ctpl, "w1-canon")),
        Spec(f"dvc add big.bin ({size}, fresh repo)", b.dvc_cmd("add", "-q", "big.bin"),
             prep=fresh(dtpl, "w1-dvc")),
    ], runs=a.slow_runs, warmup=0)
    if c_add.ok and "w1-canon" in last:
        b.check(wl, "canon status is clean after pinning", b.canon_cmd("status"), last["w1-canon"])
    sh(f"cat {big} > /dev/null")
    specs = [Spec(f"canon status (first hash of {size}, fresh repo)", b.canon_cmd("status"),
                  prep=fresh(ctpl, "w1-canon-hash"), ok=(0, 1)),
             Spec("sha256sum big.bin", ["sha256sum", big], cwd=src)]
    if shutil.which("openssl"):  # OpenSSL uses SHA-NI where the CPU has it; coreutils doesn't
        specs.append(Spec("openssl sha256 big.bin", ["openssl", "sha256", big], cwd=src))
    # the fresh copy is in the page cache, like the file sha256sum reads: both hash from memory
    c_hash, *refs = b.interleaved(wl, specs, runs=a.slow_runs, warmup=0)
    b.row(wl, f"first add of one {size} file (fresh repo)", c_add, d_add, refs)
    b.row(wl, f"first hash of {size} (`canon status`, fresh repo)", c_hash, None, refs,
          Target("≥80% of sha256sum's speed", hash_target))


# ------------------------------------------------------------------ reporting


def fmt_s(s: Stat | None) -> str:
    if s is None:
        return "—"
    if not s.ok:
        return f"failed ({s.error})" if s.error else "—"
    return f"{s.median:.3f} s"


def canon_revision() -> str:
    """The commit of the canon checkout being measured, and whether src/ has local edits
    (the CLI is an editable install: edits change what is measured)."""
    head = sh(f"git -C {REPO} rev-parse --short HEAD", check=False).strip() or "?"
    dirty = sh(f"git -C {REPO} status --porcelain -- src", check=False).strip()
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, "src")):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for n in sorted(filenames):
            if n.endswith(".py"):
                p = os.path.join(dirpath, n)
                h.update(p.encode() + b"\0")
                with open(p, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    tree = f"src tree {h.hexdigest()[:10]}"
    return head + (f" + uncommitted changes ({tree})" if dirty else f" ({tree})")


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


class LoadSampler:
    """Samples the 1-minute load average every few seconds during the run: other work on
    the machine (a test suite, another benchmark) makes every figure noisier, and the
    report says so rather than hiding it."""

    def __init__(self, every: float = 5.0) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError, IndexError), \
                    open("/proc/loadavg") as f:
                self.samples.append(float(f.read().split()[0]))
            self._stop.wait(self._every)

    def start(self) -> LoadSampler:
        self._thread.start()
        return self

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(timeout=10)
        if not self.samples:
            return "?"
        return (f"mean {statistics.mean(self.samples):.2f}, max {max(self.samples):.2f} "
                f"({len(self.samples)} samples)")

    def busy(self, ncpu: int) -> bool:
        # the benchmark itself keeps about one core busy
        return bool(self.samples) and statistics.mean(self.samples) > max(1.5, 0.75 * ncpu)


def wait_quiet(seconds: float) -> None:
    """Wait (up to `seconds`) until the 1-minute load average is below 1."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open("/proc/loadavg") as f:
            load = float(f.read().split()[0])
        if load < 1.0:
            return
        print(f"(waiting for a quieter machine: load average {load:.2f})", flush=True)
        time.sleep(15)


def _busy_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def settle(limit: float = 90.0) -> float:
    """Wait until the machine has been quiet for one second (less than a tenth of one
    core busy), up to ``limit`` seconds; returns the seconds waited. Heavy set-up I/O
    (copying 50,000 files, `git add` of them) leaves the kernel busy on this VM for
    ~20 s after `sync` (page reclaim): a steady-state row measured in that window times
    whatever the kernel is doing. The same wait precedes every tool's steady-state runs."""
    start = time.monotonic()
    ncpu = os.cpu_count() or 1
    while time.monotonic() - start < limit:
        b0, t0 = _busy_jiffies()
        time.sleep(1.0)
        b1, t1 = _busy_jiffies()
        if t1 > t0 and (b1 - b0) / (t1 - t0) * ncpu < 0.1:
            break
    return time.monotonic() - start


def machine_info(b: Bench) -> list[tuple[str, str]]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       "?")
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(ln.split()[1] for ln in f if ln.startswith("MemTotal:"))) / 2**20
        mem_s = f"{mem:.1f} GiB"
    except (OSError, StopIteration):
        mem_s = "?"
    canon_v = subprocess.run([b.canon, "--version"], capture_output=True, text=True,
                             check=False, env=ENV).stdout.strip() or "?"
    git_v = sh("git --version").strip()
    fs = sh(f"df -hT {b.root} | tail -1 | awk '{{print $2}}'", check=False).strip()
    return [
        ("date", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        ("nproc", str(os.cpu_count())),
        ("CPU", cpu),
        ("memory", mem_s),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("work dir filesystem", fs or "?"),
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("canon", f"{canon_v} ({b.canon}), source {canon_revision()}"),
        ("DVC", f"{b.dvc_version} ({b.dvc})"),
        ("git", git_v),
        ("load average at start", loadavg()),
    ]


def render(b: Bench, info: list[tuple[str, str]], elapsed: float) -> str:
    a = b.a
    out = ["# Benchmarks: canon vs DVC", "",
           "Measured, not asserted: every number below was produced by one run of "
           "`bench/run.py` on the machine described here (nothing is edited by hand).", "",
           "Reproduce with:", "", "```sh", REPRODUCE, "```", "",
           f"This run: `python bench/run.py {' '.join(a.argv)}` — {elapsed / 60:.1f} min; "
           f"sizes: {a.stages} stages, {a.files} files, {a.big_mib} MiB; "
           f"{a.runs} runs for quick commands, {a.slow_runs} for slow or fresh-copy ones; "
           f"page cache filled before write-heavy runs: {'yes' if a.fill_pagecache else 'no'}; "
           f"Python bytecode cached (PYTHONPYCACHEPREFIX) and "
           f"{'compiled before measuring' if a.prime_bytecode else 'written by the first runs'}, "
           "as after `pip install`.",
           "", "## Machine", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in info]
    out += ["", "Each figure is the median wall time of one whole command (startup included). "
            "The ratio is DVC's median / canon's median: how many times faster canon is. "
            "Fresh measurements use a new copy of the workspace per run and no warm-up; "
            "steady-state ones get one unrecorded warm-up run. After W2's heavy set-up I/O "
            "(copying 50,000 files) each timed run starts once the machine has been quiet for a "
            "second (this VM's kernel keeps a core busy for ~20 s after such I/O, even after "
            "`sync`; the same wait precedes every tool). The commands compared in a "
            "row run interleaved (one run of each per round, the order reversed every other "
            "round), so a change of load on the machine hits both tools alike. The CPU "
            "column below (user+system time of the command and its children) is less "
            "sensitive to other work on the machine than wall time.", ""]
    titles = {"W3": f"W3: {a.stages}-stage pipeline (chain)",
              "W3L": f"W3: {a.stages}-stage pipeline in layers of 10 (parallel)",
              "Startup": "Startup", "W2": "W2: many small files", "W1": "W1: one big file",
              "W5": "W5: push and pull of the many small files (local remote, S3)",
              "W6": "W6: images (the example's base and model)"}
    seen: list[str] = []
    for r in b.rows:
        if r.wl not in seen:
            seen.append(r.wl)
    for wl in seen:
        out += [f"## {titles.get(wl, wl)}", "",
                "| workload | canon median | DVC median | ratio (DVC/canon) | reference | "
                "target | met? |", "|---|---|---|---|---|---|---|"]
        for r in (r for r in b.rows if r.wl == wl):
            q = r.ratio()
            refs = "; ".join(f"{s.label.removeprefix('ref: ')} {fmt_s(s)}" for s in r.refs)
            out.append(f"| {r.label} | {fmt_s(r.canon)} | {fmt_s(r.dvc)} | "
                       f"{f'{q:.1f}x' if q is not None else '—'} | {refs or '—'} | "
                       f"{r.target.text if r.target else '—'} | {r.met() or '—'} |")
        out.append("")
    for title, lines in b.sections:
        out += [f"## {title}", "", *lines]
    tgt = [r for r in b.rows if r.target]
    if tgt:
        out += ["## Targets", "", "| target | workload | canon | met? |", "|---|---|---|---|"]
        for r in tgt:
            out.append(f"| {r.target.text if r.target else ''} | {r.wl}: {r.label} | "
                       f"{fmt_s(r.canon)} | {r.met()} |")
        out.append("")
    out += ["## Every measurement", "",
            "| wl | measurement | command | median s | min–max s | CPU s (user+sys) | "
            "peak RSS MiB | n |",
            "|---|---|---|---|---|---|---|---|"]
    wl_of = {id(s): r.wl for r in b.rows for s in (r.canon, r.dvc, *r.refs) if s is not None}
    for s in b.stats:
        cmd = s.cmd().replace(b.root, "$WORK").replace(REPO, "$REPO")
        if len(cmd) > 120:
            cmd = cmd[:117] + "…"
        if s.ok:
            out.append(f"| {wl_of.get(id(s), '')} | {s.label} | `{cmd}` | {s.median:.3f} | "
                       f"{min(s.walls):.3f}–{max(s.walls):.3f} | {s.cpu:.3f} | {s.peak:.0f} | "
                       f"{len(s.walls)} |")
        else:
            out.append(f"| {wl_of.get(id(s), '')} | {s.label} | `{cmd}` | failed: {s.error} "
                       "| | | | |")
    out.append("")
    if b.notes:
        out += ["## Problems seen in this run", ""]
        for n in b.notes:
            out += [n.replace(b.root, "$WORK"), ""]
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------ main


def ensure_dvc(venv: str) -> str:
    dvc = os.path.join(venv, "bin", "dvc")
    if not os.path.exists(dvc):
        print(f"(creating {venv} and installing dvc into it)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "dvc"], check=True)
    return dvc


def interpreter_of(script: str) -> str | None:
    """The python a console script runs with (its #! line)."""
    try:
        with open(script, "rb") as f:
            first = f.readline().decode(errors="replace")
    except OSError:
        return None
    if first.startswith("#!") and "python" in first:
        return first[2:].split()[0]
    return None


def prime_bytecode(pythons: Sequence[str]) -> None:
    """Compile everything each interpreter can import (stdlib, site-packages, an editable
    canon's src/) into the bytecode cache, untimed, so no measured command pays for
    compiling; later runs only check timestamps."""
    t0 = time.perf_counter()
    code = ("import os, sys\n"
            "dirs = [p for p in sys.path if os.path.isdir(p)]\n"
            "try:\n"
            "    import canon\n"
            "    dirs.append(os.path.dirname(canon.__file__))\n"
            "except ImportError:\n"
            "    pass\n"
            "print(chr(10).join(dirs))\n")
    for py in dict.fromkeys(pythons):
        dirs = subprocess.run([py, "-c", code], env=ENV, capture_output=True, text=True,
                              check=False).stdout.split()
        subprocess.run([py, "-m", "compileall", "-q", "-j", "0", *dirs], env=ENV,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    print(f"(bytecode cache {ENV['PYTHONPYCACHEPREFIX']} ready in "
          f"{time.perf_counter() - t0:.0f} s)", flush=True)


def default_canon() -> str:
    found = shutil.which("canon", path=ENV["PATH"])
    local = os.path.join(REPO, ".venv", "bin", "canon")
    return found or local


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bench-work"),
                    help="scratch folder (needs ~15 GiB at full size, plus RAM-size for "
                         "--fill-pagecache); default %(default)s")
    ap.add_argument("--only", default="w3,startup,w2,w1,w6",
                    help="workloads, in order (default %(default)s)")
    ap.add_argument("--canon", default=None, help="canon executable (default: canon on PATH, "
                    "else .venv/bin/canon)")
    ap.add_argument("--dvc-venv", default=os.path.join(HERE, ".dvc-venv"))
    ap.add_argument("--runs", type=int, default=None, help="runs for quick commands (5)")
    ap.add_argument("--slow-runs", type=int, default=None,
                    help="runs for slow and fresh-copy commands (3)")
    ap.add_argument("--files", type=int, default=None, help="W2 file count (50000)")
    ap.add_argument("--big-mib", type=int, default=None, help="W1 file size in MiB (1024)")
    ap.add_argument("--stages", type=int, default=None, help="W3 stage count (100)")
    ap.add_argument("--fill-pagecache", action=argparse.BooleanOptionalAction, default=None,
                    help="fill free memory with a cached file before write-heavy runs "
                         "(default: on, off with --smoke)")
    ap.add_argument("--prime-bytecode", action=argparse.BooleanOptionalAction, default=None,
                    help="compile both tools' Python code into the bytecode cache before "
                         "measuring (default: on, off with --smoke)")
    ap.add_argument("--s3", action=argparse.BooleanOptionalAction, default=True,
                    help="W5: also measure against a moto S3 server (default on)")
    ap.add_argument("--s3-runs", type=int, default=1, help="W5: runs of each S3 command (1)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, 1 run each: checks the script end to end in < 1 min")
    ap.add_argument("--timeout", type=float, default=None,
                    help="kill a timed command after this many seconds (1800; smoke 120)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="first wait up to S seconds for the 1-min load average to drop below 1")
    ap.add_argument("--keep", action="store_true", help="keep the work folder afterwards")
    ap.add_argument("--md", default=None, help="write the report to this markdown file")
    a = ap.parse_args(argv)
    a.argv = sys.argv[1:] if argv is None else argv
    small = {"runs": 1, "slow_runs": 1, "files": 500, "big_mib": 16, "stages": 5,
             "fill_pagecache": False, "prime_bytecode": False, "timeout": 120.0}
    full = {"runs": 5, "slow_runs": 3, "files": 50000, "big_mib": 1024, "stages": 100,
            "fill_pagecache": True, "timeout": 1800.0}
    for k, v in (small if a.smoke else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.slow_runs = min(a.slow_runs, a.runs) if a.smoke else a.slow_runs
    a.canon = os.path.abspath(a.canon) if a.canon else default_canon()
    if not os.path.exists(a.canon):
        sys.exit(f"canon not found at {a.canon}: run `make install` or pass --canon")
    a.dvc = ensure_dvc(os.path.abspath(a.dvc_venv))
    if a.prime_bytecode:
        prime_bytecode([p for p in (interpreter_of(a.canon), interpreter_of(a.dvc),
                                    sys.executable) if p])

    b = Bench(a)
    if os.path.isdir(b.root) and os.listdir(b.root):
        if not os.path.exists(b.p(MARKER)):
            sys.exit(f"{b.root} exists and is not a bench work folder; pass another --work")
        shutil.rmtree(b.root)
    os.makedirs(b.root, exist_ok=True)
    open(b.p(MARKER), "w").close()
    free = shutil.disk_usage(b.root).free / 2**30
    b.dvc_version = sh(f"{a.dvc} --version").strip()
    if a.wait_quiet:
        wait_quiet(a.wait_quiet)
    info = machine_info(b)
    sampler = LoadSampler().start()
    print(f"DVC {b.dvc_version} ({a.dvc})")
    print(f"canon {dict(info)['canon']}; "
          f"python3 for stages: {shutil.which('python3', path=ENV['PATH'])}")
    print(f"work folder {b.root} ({free:.0f} GiB free); {os.cpu_count()} cpus", flush=True)

    t0 = time.perf_counter()
    import images as images_module  # bench/images.py: image builds and pushes (W6)
    import w4 as w4_module  # bench/w4.py: experiments (W4)
    import w5 as w5_module  # bench/w5.py: push/pull (W5), kept in its own file
    import w7 as w7_module  # bench/w7.py: the model server and rollouts (W7)

    steps = {"w3": w3, "startup": startup, "w2": w2, "w1": w1,
             "w4": lambda bench: w4_module.w4(bench, globals()),
             "w5": lambda bench: w5_module.w5(bench, globals()),
             "w6": lambda bench: images_module.w6(bench, globals()),
             "w7": lambda bench: w7_module.w7(bench, globals())}
    try:
        for name in a.only.split(","):
            name = name.strip().lower()
            if name not in steps:
                sys.exit(f"unknown workload {name!r}; choose from {', '.join(steps)}")
            try:
                steps[name](b)
            except SetupError as exc:
                b.notes.append(f"{name}: {exc}")
                print(f"{name}: {exc}", file=sys.stderr, flush=True)
    finally:
        elapsed = time.perf_counter() - t0
        info.append(("load average at end", loadavg()))
        info.append(("load average (1 min) during the run", sampler.stop()))
        if sampler.busy(os.cpu_count() or 1):
            b.notes.insert(0, "The machine was busy with other work during this run (see the "
                           "load average above): every figure is noisier and slower than on "
                           "an idle machine, for both tools alike.")
        rev = canon_revision()
        if rev not in dict(info)["canon"]:
            b.notes.append(f"canon's source changed during this run (now {rev}): "
                           "rows measured before and after the change are not comparable")
        report = render(b, info, elapsed)
        os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        raw = os.path.join(HERE, "results", f"{stamp}.json")
        with open(raw, "w") as f:
            json.dump({"args": {k: v for k, v in vars(a).items()}, "machine": info,
                       "stats": [{"label": s.label, "cmd": s.cmd(), "walls": s.walls,
                                  "cpus": s.cpus, "peaks_mib": s.peaks, "error": s.error}
                                 for s in b.stats],
                       "notes": b.notes}, f, indent=1)
        with open(os.path.join(HERE, "results", f"{stamp}.md"), "w") as f:
            f.write(report)
        if a.md:
            with open(a.md, "w") as f:
                f.write(report)
        print()
        print("\n".join(ln for ln in report.splitlines() if ln.startswith("|")))
        print(f"\n{elapsed / 60:.1f} min; report in {a.md or raw[:-5] + '.md'}")
        if not a.keep:
            shutil.rmtree(b.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
