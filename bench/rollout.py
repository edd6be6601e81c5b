"""W7 rollouts: the weather example deployed on the local target, rolled out under load.

In a temp dir: `canon init --example weather` (it commits), a `deployments:` entry for
the local target, then with CLIENTS keep-alive clients sending /predict all the time:

    v1:       canon apply              (stages, images, first rollout)
    v2:       train.C 1.0 -> 0.5       (train + evaluate re-run, model image, rollout)
    broken:   the handler's self-check raises (never ready: rolled back automatically)

Each step reports its `canon apply` time, the requests sent during it, how many failed
(anything but HTTP 200), and which versions answered (by the image digest the server
reports at /provenance, sampled by one more client).

    .venv/bin/python bench/rollout.py [--clients 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serve import CANON, free_port  # bench/serve.py

GIT = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}
BROKEN = "\ndef example():\n    raise RuntimeError('a broken self-check: never ready')\n"


class Load:
    """Clients sending /predict until stopped; one more samples /provenance."""

    def __init__(self, url: str, body: bytes, clients: int) -> None:
        self.url, self.body = url, body
        self.sent = self.failed = 0
        self.versions: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._predict) for _ in range(clients)]
        self._threads.append(threading.Thread(target=self._which))

    def _predict(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    ok = client.post(self.url + "/predict", content=self.body, headers={
                        "content-type": "application/json"}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with self._lock:
                    self.sent += 1
                    self.failed += not ok

    def _which(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    digest = client.get(self.url + "/provenance").json().get("image")
                except (httpx.HTTPError, ValueError):
                    digest = "error"
                with self._lock:
                    key = str(digest)[:19]
                    self.versions[key] = self.versions.get(key, 0) + 1
                time.sleep(0.05)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="canon-bench-rollout-"))
    env = {**os.environ, **GIT, "PATH": f"{Path(CANON).parent}:{os.environ['PATH']}"}
    root = work / "w"
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True,
                              check=check)

    def commit(message: str) -> None:
        run("git", "commit", "-qam", message)

    def apply() -> tuple[float, int]:
        t = time.perf_counter()
        done = run(CANON, "apply", check=False)
        return time.perf_counter() - t, done.returncode

    out: dict[str, Any] = {"clients": args.clients}
    try:
        subprocess.run([CANON, "init", str(root), "--example", "weather"], check=True,
                       env=env, capture_output=True)
        with (root / "canon.yaml").open("a") as f:
            f.write(f"\ndeployments:\n  local: {{target: local, artifact: model, port: {port},"
                    " ready_timeout: 15}\n")
        commit("deploy the model locally")
        seconds, code = apply()
        out["v1"] = {"apply_s": round(seconds, 2), "exit": code}
        sys.path.insert(0, str(root / "src"))
        from weather.serve import example  # type: ignore[import-not-found]

        body = json.dumps({"inputs": example()}).encode()
        params = root / "params.yaml"
        params.write_text(params.read_text().replace("C: 1.0 ", "C: 0.5 "))
        commit("train.C 0.5")
        with Load(url, body, args.clients) as load:
            time.sleep(1)
            seconds, code = apply()
            time.sleep(1)
        out["v2"] = {"apply_s": round(seconds, 2), "exit": code, "requests": load.sent,
                     "failed": load.failed, "versions": load.versions}
        serve_py = root / "src" / "weather" / "serve.py"
        serve_py.write_text(serve_py.read_text() + BROKEN)
        commit("a handler whose self-check fails")
        with Load(url, body, args.clients) as load:
            time.sleep(1)
            seconds, code = apply()
            time.sleep(1)
        out["broken"] = {"apply_s": round(seconds, 2), "exit": code, "requests": load.sent,
                         "failed": load.failed, "versions": load.versions}
    finally:
        subprocess.run([CANON, "deploy", "--stop"], cwd=root, env=env, capture_output=True,
                       check=False)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
        return
    for step in ("v1", "v2", "broken"):
        if step in out:
            print(step, out[step])


if __name__ == "__main__":
    main()
