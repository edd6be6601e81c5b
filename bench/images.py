"""W6: images — `canon build` of the bundled example's base and model images.

Called by bench/run.py (``--only w6``); ``ns`` is run.py's namespace. Rows:

- a no-change ``canon build`` (everything recorded in canon.lock): < 0.5 s;
- layer creation: canon's layer writer vs ``tar --sort=name … | gzip -n -6`` on
  the same files (the example's environment for linux/amd64, installed by
  pip --target, plus its repo): canon at least as fast. canon deflates 1 MiB
  blocks on every core (``executors/image/pgzip.py``) and uses slightly less CPU
  than tar + gzip (~10.5 s vs ~10.9 s here), so its lead in wall time is the
  idle cores: with other work on every core the two are even (see the CPU column);
- ``canon push-image model`` to a real registry (docker-registry on
  127.0.0.1, started here and stopped by its PID) that already has the base:
  bytes uploaded vs the model layer's size.

The first ``canon build`` installs the example's requirements lock for
linux/amd64 from PyPI (~70 MB of wheels, from pip's cache after the first time).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def registry(work: str) -> Iterator[str | None]:
    binary = shutil.which("docker-registry")
    if binary is None:
        yield None
        return
    port = _free_port()
    os.makedirs(work, exist_ok=True)
    cfg = os.path.join(work, "registry.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: "
                f"{{rootdirectory: {work}/data}}\n  delete: {{enabled: true}}\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([binary, "serve", cfg], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def w6(b: Any, ns: dict[str, Any]) -> None:
    a, wl = b.a, "W6"
    sh, under, Target = ns["sh"], ns["under"], ns["Target"]
    canon = b.canon
    repo = b.fresh_dir("w6")
    sh(f"{canon} init {repo} --example weather")  # declares base + model; commits
    sh(f"{canon} apply features train evaluate", repo)  # the stages only: images are timed below
    cold = b.measure(wl, "canon build (first: pip for linux/amd64 + layers)",
                     [canon, "build"], cwd=repo, runs=1, warmup=0)
    b.row(wl, "first `canon build` of the example (base + model)", cold, None)
    nop = b.measure(wl, "canon build (no change)", [canon, "build"], cwd=repo, runs=a.runs)
    b.row(wl, "no-change `canon build`", nop, None, [], under(0.5))

    # the same files both ways: the environment canon installed, plus the repo
    files = b.p("w6-files")
    if not os.path.isdir(files):
        env = os.path.join(files, "canon", "env")
        os.makedirs(env)
        req = os.path.join(repo, "requirements.lock")
        sh(f"{ns['sys'].executable} -m pip install -q --target {env} --no-deps --no-compile "
           "--only-binary=:all: --implementation cp --python-version 3.11 "
           f"--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -r {req}")
        sh(f"git archive HEAD | tar -x -C {files} --one-top-level=canon/repo", repo)
    out = b.p("w6-layer.tar.gz")
    c_layer = b.measure(wl, "canon layer writer (env + repo files)",
                        [ns["sys"].executable, os.path.join(ns["WL"], "layer_of_dir.py"),
                         files, out], cwd=b.root, runs=a.slow_runs)
    ref = b.measure(wl, "ref: tar --sort=name ..., piped to gzip -n -6",
                    ["sh", "-c", f"tar --sort=name --mtime=@1700000000 --owner=0 --group=0 "
                     f"--numeric-owner -C {files} -cf - . | gzip -n -6 > {out}.ref"],
                    cwd=b.root, runs=a.slow_runs)

    def as_fast(r: Any) -> bool | None:
        if r.canon is None or not r.canon.ok or not ref.ok:
            return None
        return bool(r.canon.median <= ref.median * 1.05)

    size = sh(f"du -sb {files} | cut -f1").strip()
    b.row(wl, f"layer creation, {int(size) / 2**20:.0f} MiB of files", c_layer, None, [ref],
          Target("≤ tar, gzip -n", as_fast))

    with registry(b.p("w6-registry")) as host:
        if host is None:
            b.notes.append("W6: docker-registry is not installed; push row skipped")
            return
        def with_base(name: str) -> str:
            target = f"{host}/{name}"
            sh(f"{canon} push-image base --registry {target}", repo)
            return target

        timed = with_base("timed")
        push = b.measure(wl, "canon push-image model (base already pushed)",
                         [canon, "push-image", "model", "--registry", timed], cwd=repo,
                         runs=1, warmup=0)
        fresh = json.loads(sh(f"{canon} push-image model --registry {with_base('counted')} "
                              "--json", repo))
        again = json.loads(sh(f"{canon} push-image model --registry {timed} --json", repo))
        images = json.loads(sh(f"{canon} images --json", repo))
        model = next(i for i in images if i["name"] == "model")
        own = [layer["size"] for layer in model["layers"] if not layer["shared"]]
        b.row(wl, f"push model image, base already there: {fresh['bytes_uploaded']} bytes "
              f"uploaded (model layer {own[0]} B + config; image {model['size']} B)", push, None)
        b.notes.append(
            "W6 push: into a repository whose base image was pushed first (cross-repository "
            f"mount), `canon push-image model` uploaded {fresh['bytes_uploaded']} bytes in "
            f"{fresh['uploaded']} blobs and mounted/skipped {fresh['skipped']}; its own layer "
            f"is {own[0]} bytes of a {model['size']}-byte image. Pushing again: "
            f"{again['uploaded']} blobs uploaded.")
