"""W5: push and pull of W2's 50,000 small files, canon vs DVC vs `aws s3 sync`.

Called by bench/run.py (``--only w5``); ``ns`` is run.py's namespace (Bench
helpers, targets). Two remotes, each fresh for every "empty remote" run:

- a local directory (canon: ``remotes: {url: DIR}``; DVC: ``dvc remote add``);
- moto's S3 server, started here as a subprocess on 127.0.0.1 and a free port
  (``moto_server``), stopped by its PID at the end; credentials are fake env
  variables. moto answers ~400 requests/s, which bounds any one-request-per-
  file client (DVC, aws s3 sync) at minutes; canon packs small files.

Rows: push to an empty remote, pull into a fresh `git clone`, and the no-op
push / pull (remote complete, cache complete), each with DVC on the same data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "benchbenchbench",
    "AWS_SECRET_ACCESS_KEY": "benchbenchbenchbenchbench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(env: dict[str, str]) -> Iterator[str]:
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable) + os.pathsep
                       + env.get("PATH", ""))
    if exe is None:
        raise RuntimeError("moto_server not found: pip install 'moto[server]'")
    port = _free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=1).close()
                break
            time.sleep(0.05)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a server holding 150,000 keys can be slow to go
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def w5(b: Any, ns: dict[str, Any]) -> None:
    a, wl = b.a, "W5"
    sh, ENV = ns["sh"], ns["ENV"]
    ratio_at_least, under, Target = ns["ratio_at_least"], ns["under"], ns["Target"]
    ENV.update(S3_ENV)
    src = b.p("src", "w2")
    b.gen("gen_manyfiles.py", src, "--n", a.files)
    data = os.path.join(src, "data")
    canon_yaml = "project: bench\ndata:\n  files:\n    source: data\nremotes:\n{remotes}"
    n = [0]

    def fresh_name(kind: str) -> str:
        n[0] += 1
        return b.p("remotes", f"{kind}-{n[0]:03d}")

    # one canon repo and one DVC repo holding the data, pinned and committed
    crepo = b.copy_of(b.canon_repo("tmpl-w5-canon", canon_yaml.format(remotes="  {}\n"),
                                   ["/data/"]), "w5-canon", {"data": data})
    drepo = b.copy_of(b.dvc_template(), "w5-dvc", {"data": data})
    dvc, canon = b.dvc, b.canon

    def set_canon_remotes(local: str, s3: str | None, endpoint: str | None) -> None:
        lines = f"  local: {{url: {local}}}\n"
        if s3:
            lines += f"  s3: {{url: '{s3}', endpoint_url: '{endpoint}'}}\n"
        with open(os.path.join(crepo, "canon.yaml"), "w") as f:
            f.write(canon_yaml.format(remotes=lines) + "default_remote: local\n")

    set_canon_remotes(fresh_name("canon-local"), None, None)
    sh(f"{canon} apply >/dev/null && git add -A && git commit -qm pinned", crepo)
    sh(f"{dvc} add -q data && git add -A && git commit -qm added", drepo)
    state = {"local": "", "s3": None, "endpoint": None}

    def canon_clone(remote: str) -> Callable[[], str]:
        def prep() -> str:
            d = b.fresh_dir("w5-canon-clone")
            sh(f"git clone -q {crepo} {d}")
            set_canon_remotes(state["local"], state["s3"], state["endpoint"])
            shutil.copyfile(os.path.join(crepo, "canon.yaml"), os.path.join(d, "canon.yaml"))
            return d
        return prep

    def dvc_clone(remote_cmd: str) -> Callable[[], str]:
        def prep() -> str:
            d = b.fresh_dir("w5-dvc-clone")
            sh(f"git clone -q {drepo} {d}")
            sh(remote_cmd, d)
            return d
        return prep

    # -- local directory remote ----------------------------------------------------
    def canon_new_local() -> str:
        state["local"] = fresh_name("canon-local")
        set_canon_remotes(state["local"], state["s3"], state["endpoint"])
        return crepo

    def dvc_new_local() -> str:
        state["dvc_local"] = fresh_name("dvc-local")
        sh(f"{dvc} remote add -f -d local {state['dvc_local']}", drepo)
        return drepo

    c_push = b.measure(wl, f"canon push ({a.files} files, empty local remote)",
                       [canon, "push", "-r", "local"], prep=canon_new_local,
                       runs=a.slow_runs, warmup=0)
    d_push = b.measure(wl, f"dvc push ({a.files} files, empty local remote)",
                       [dvc, "push", "-q"], prep=dvc_new_local, runs=a.slow_runs, warmup=0)
    b.row(wl, "push to an empty local-directory remote", c_push, d_push, [],
          ratio_at_least(5))
    c_pull = b.measure(wl, "canon pull (fresh clone, local remote)", [canon, "pull", "-r", "local"],
                       prep=canon_clone("local"), runs=a.slow_runs, warmup=0)
    d_pull = b.measure(wl, "dvc pull (fresh clone, local remote)", [dvc, "pull", "-q"],
                       prep=dvc_clone(f"{dvc} remote add -f -d local {state.get('dvc_local')}"),
                       runs=a.slow_runs, warmup=0)
    b.row(wl, "pull into a fresh clone, local-directory remote", c_pull, d_pull, [],
          ratio_at_least(5))
    c_nop = b.measure(wl, "canon push (nothing to do, local)", [canon, "push", "-r", "local"],
                      cwd=crepo, runs=a.runs)
    d_nop = b.measure(wl, "dvc push (nothing to do, local)", [dvc, "push"], cwd=drepo,
                      runs=a.runs)
    b.row(wl, "no-op push, local remote", c_nop, d_nop, [], under(0.5))
    c_nopull = b.measure(wl, "canon pull (nothing to do, local)", [canon, "pull", "-r", "local"],
                         cwd=crepo, runs=a.runs)
    d_nopull = b.measure(wl, "dvc pull (nothing to do, local)", [dvc, "pull"], cwd=drepo,
                         runs=a.runs)
    b.row(wl, "no-op pull, local remote", c_nopull, d_nopull, [], under(0.5))

    # -- S3 (moto server) ------------------------------------------------------------
    if not a.s3:
        b.notes.append("W5: S3 rows skipped (--no-s3)")
        return
    with moto_server(ENV) as ep:
        # One bucket per tool: moto answers a ListObjectsV2 by scanning every key of the
        # bucket (real S3 lists a prefix), so a shared bucket would make each tool's
        # listing pay for the other tools' 50,000 keys.
        bucket = "canonbench"
        aws = shutil.which("aws", path=ENV["PATH"]) or "aws"
        for suffix in ("", "-dvc", "-sync"):
            sh(f"{aws} --endpoint-url {ep} s3 mb s3://{bucket}{suffix}")
        state["endpoint"] = ep

        def canon_new_s3() -> str:
            state["s3"] = f"s3://{bucket}/canon/r{time.time_ns()}"
            set_canon_remotes(state["local"], state["s3"], ep)
            return crepo

        def dvc_new_s3() -> str:
            state["dvc_s3"] = f"s3://{bucket}-dvc/dvc/r{time.time_ns()}"
            sh(f"{dvc} remote add -f s3 {state['dvc_s3']} && "
               f"{dvc} remote modify s3 endpointurl {ep}", drepo)
            return drepo

        runs = a.s3_runs
        c_push = b.measure(wl, "canon push -r s3 (moto, empty prefix)", [canon, "push", "-r", "s3"],
                           prep=canon_new_s3, runs=runs, warmup=0)
        d_push = b.measure(wl, "dvc push -r s3 (moto, empty prefix)", [dvc, "push", "-q", "-r", "s3"],
                           prep=dvc_new_s3, runs=runs, warmup=0)
        up = b.measure(wl, "ref: aws s3 sync data -> s3 (moto)",
                       ["bash", "-c", f"{aws} --endpoint-url {ep} s3 sync data "
                        f"s3://{bucket}-sync/sync/$(date +%s%N) --only-show-errors"],
                       cwd=drepo, runs=runs, warmup=0)
        faster_than = Target("≥5x faster than DVC and faster than aws s3 sync",
                             lambda r: _beats(r, 5))
        b.row(wl, "push to S3 (moto server)", c_push, d_push, [up], faster_than)
        c_pull = b.measure(wl, "canon pull (fresh clone, s3/moto)", [canon, "pull", "-r", "s3"],
                           prep=canon_clone("s3"), runs=runs, warmup=0)
        d_pull = b.measure(
            wl, "dvc pull (fresh clone, s3/moto)", [dvc, "pull", "-q", "-r", "s3"],
            prep=dvc_clone(f"{dvc} remote add -f s3 {state['dvc_s3']} && "
                           f"{dvc} remote modify s3 endpointurl {ep}"),
            runs=runs, warmup=0)
        down_src = f"s3://{bucket}-sync/sync/base"
        sh(f"{aws} --endpoint-url {ep} s3 sync data {down_src} --only-show-errors", drepo)

        def empty_dir() -> str:
            d = b.fresh_dir("w5-sync-down")
            os.makedirs(d)
            return d

        down = b.measure(wl, "ref: aws s3 sync s3 -> data (moto)",
                         [aws, "--endpoint-url", ep, "s3", "sync", down_src, "data",
                          "--only-show-errors"], prep=empty_dir, runs=runs, warmup=0)
        b.row(wl, "pull from S3 (moto server) into a fresh clone", c_pull, d_pull, [down],
              faster_than)
        c_nop = b.measure(wl, "canon push -r s3 (nothing to do)", [canon, "push", "-r", "s3"],
                          cwd=crepo, runs=a.runs)
        d_nop = b.measure(wl, "dvc push -r s3 (nothing to do)", [dvc, "push", "-r", "s3"],
                          cwd=drepo, runs=a.runs)
        b.row(wl, "no-op push, S3", c_nop, d_nop, [], under(0.5))
        c_nopull = b.measure(wl, "canon pull -r s3 (nothing to do)", [canon, "pull", "-r", "s3"],
                             cwd=crepo, runs=a.runs)
        d_nopull = b.measure(wl, "dvc pull -r s3 (nothing to do)", [dvc, "pull", "-r", "s3"],
                             cwd=drepo, runs=a.runs)
        b.row(wl, "no-op pull, S3", c_nopull, d_nopull, [], under(0.5))


def _beats(r: Any, x: float) -> bool | None:
    q = r.ratio()
    ref = next((s for s in r.refs if s.ok), None)
    if q is None or ref is None or r.canon is None or not r.canon.ok:
        return None
    return bool(q >= x and r.canon.median < ref.median)
