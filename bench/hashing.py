#!/usr/bin/env python3
"""Timing of canon's performance core (not a test): digests, stat cache, object store.

    python bench/hashing.py [--work DIR] [--runs 3] [--big-mib 1024] [--files 50000]
                            [--no-big] [--no-store] [--keep]

In one run, on the same data, medians of --runs:

  W1  canon's hash_file of a 1 GiB file vs `sha256sum` (and mmap, for reference)
  W2  first digest of 50,000 files of 1-8 KiB (fresh stat cache), all cores vs one
  W2  "status" of that tree with nothing changed: canon in-process and as a whole
      `python -c` process, vs `git status` and a Python stat-all (in-process and
      the shared stat_all.py script); then after 10 files changed
  W2  storing the tree in a fresh object store, and restoring it (one run each)

Data goes under --work (default: a temp dir under /tmp); the big file and the
object store are deleted at the end unless --keep. The machine is noisy and has
few cores: compare the figures of one run with each other, not across runs.
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

import canon.digest as digest_mod  # noqa: E402
from canon.digest import hash_file  # noqa: E402
from canon.observe.content import ContentReader  # noqa: E402
from canon.stores.objects import ObjectStore  # noqa: E402
from canon.stores.statcache import StatCache  # noqa: E402

WORKLOADS = HERE / "workloads"
GIT_ENV = dict(
    os.environ,
    GIT_AUTHOR_NAME="bench",
    GIT_AUTHOR_EMAIL="bench@example.com",
    GIT_COMMITTER_NAME="bench",
    GIT_COMMITTER_EMAIL="bench@example.com",
)


def timed(fn: Callable[[], object], runs: int, setup: Callable[[], object] | None = None) -> float:
    """Median wall time of ``fn`` over ``runs`` (``setup`` untimed before each)."""
    times = []
    for _ in range(runs):
        if setup is not None:
            setup()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def sh(*cmd: str, cwd: Path | None = None) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, env=GIT_ENV)


def row(label: str, secs: float, ref_label: str = "", ref: float = 0.0) -> None:
    ratio = f"{ref / secs:6.2f}x" if ref else ""
    ref_s = f"{ref_label} {ref:.3f} s" if ref_label else ""
    print(f"  {label:<46} {secs:8.3f} s   {ref_s:<34} {ratio}", flush=True)


def mmap_hash(path: Path) -> str:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return hashlib.sha256(m).hexdigest()


def bench_big(work: Path, runs: int, mib: int) -> None:
    big = work / "big" / "big.bin"
    if not big.exists() or big.stat().st_size != mib << 20:
        sh(
            sys.executable,
            str(WORKLOADS / "gen_bigfile.py"),
            "--out",
            str(big.parent),
            "--n",
            str(mib),
        )
    sh("cat", str(big))  # page cache warm for every contender alike
    print(f"W1: one {mib} MiB file")
    ours = timed(lambda: hash_file(big), runs)
    ref = timed(lambda: sh("sha256sum", str(big)), runs)
    row("canon hash_file (readinto, 1 MiB buffer)", ours, "sha256sum", ref)
    row(
        "mmap + hashlib (not used: SIGBUS risk)",
        timed(lambda: mmap_hash(big), runs),
        "sha256sum",
        ref,
    )
    assert hash_file(big) == "sha256:" + mmap_hash(big)


def observe(root: Path, db: Path | None) -> object:
    with StatCache(db) as cache:
        return ContentReader(root, cache).content("data")


def stat_all(top: str) -> int:
    """The loop of the shared stat_all.py, in-process."""
    n, stack = 0, [top]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    os.stat(e.path)
                    n += 1
    return n


def bench_many(work: Path, runs: int, files: int, store: bool) -> None:
    root = work / "many"
    if not (root / "data").is_dir():
        sh(
            sys.executable,
            str(WORKLOADS / "gen_manyfiles.py"),
            "--out",
            str(root),
            "--n",
            str(files),
        )
    if not (root / ".git").is_dir():
        sh("git", "init", "-q", cwd=root)
        sh("git", "add", "-A", cwd=root)
        sh("git", "commit", "-qm", "data", cwd=root)
    db = root / ".canon" / "state.db"

    def fresh_db() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)

    print(f"W2: {files} files of 1-8 KiB ({os.cpu_count()} CPUs)")
    first = timed(lambda: observe(root, db), runs, fresh_db)
    saved = digest_mod.cores
    digest_mod.cores = lambda: 1
    try:
        serial = timed(lambda: observe(root, db), runs, fresh_db)
    finally:
        digest_mod.cores = saved
    row("first digest, all cores (fresh stat cache)", first, "one core", serial)

    observe(root, db)  # warm: cache filled, nothing racy from here on
    time.sleep(0.1)
    observe(root, db)
    nochange = timed(lambda: observe(root, db), runs)
    git = timed(lambda: sh("git", "status", "--porcelain", cwd=root), runs)
    py_stat = timed(lambda: stat_all(str(root / "data")), runs)
    script = timed(
        lambda: sh(sys.executable, str(WORKLOADS / "stat_all.py"), str(root / "data")), runs
    )
    code = (
        "import sys; from pathlib import Path; from canon.observe.content import ContentReader;"
        "from canon.stores.statcache import StatCache; c = StatCache(Path(sys.argv[1]));"
        "ContentReader(Path(sys.argv[2]), c).content('data'); c.close()"
    )
    whole = timed(lambda: sh(sys.executable, "-c", code, str(db), str(root)), runs)
    row("no change, in-process (open db + walk)", nochange, "git status", git)
    row("no change, in-process", nochange, "Python stat-all in-process", py_stat)
    row("no change, whole `python -c` process", whole, "git status", git)
    row("no change, whole `python -c` process", whole, "stat_all.py process", script)

    def mutate() -> None:
        subprocess.run(
            [sys.executable, str(WORKLOADS / "mutate_files.py"), "--out", str(root), "--n", "10"],
            check=True,
            capture_output=True,
        )

    row("after 10 files changed", timed(lambda: observe(root, db), runs, mutate))

    if store:
        with StatCache(db) as cache:
            snap = ContentReader(root, cache).snapshot("data")
        assert snap is not None and snap[1] is not None
        manifest = snap[1]
        run_id = f"{os.getpid()}-{time.monotonic_ns()}"  # always fresh, never a leftover
        objects = ObjectStore(work / f"store-{run_id}")
        row(
            "store the tree (fresh object store, 1 run)",
            timed(lambda: objects.add_tree(root / "data", manifest), 1),
        )
        row(
            "store it again (all present)",
            timed(lambda: objects.add_tree(root / "data", manifest), runs),
        )
        out = work / f"restored-{run_id}" / "data"
        row(
            "restore it, verified (1 run)",
            timed(lambda: objects.restore(manifest.digest, out, is_dir=True), 1),
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=50000)
    ap.add_argument("--no-big", action="store_true")
    ap.add_argument("--no-store", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the big file and the object store")
    a = ap.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="canon-bench-hashing-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work dir {work}; medians of {a.runs} runs; ratio = reference / canon")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (other work on the machine)")
    try:
        if not a.no_big:
            bench_big(work, a.runs, a.big_mib)
        bench_many(work, a.runs, a.files, not a.no_store)
    finally:
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
        if not a.keep:
            shutil.rmtree(work / "big", ignore_errors=True)
            for p in work.glob("store-*"):
                shutil.rmtree(p, ignore_errors=True)
            for p in work.glob("restored-*"):
                shutil.rmtree(p, ignore_errors=True)


if __name__ == "__main__":
    main()
