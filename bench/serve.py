"""W7: the model server under load — /predict p50/p99 and throughput, single and batch.

Trains the weather example in a temp dir, starts `canon serve` (uvicorn, one process) on
127.0.0.1, and sends requests from CLIENTS keep-alive connections for SECONDS each:

    single: {"inputs": <9 days>}                    -> 3 predictions
    batch:  {"instances": [<9 days> x 32]}          -> 32 x 3 predictions

    .venv/bin/python bench/serve.py [--seconds 10] [--clients 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

CANON = str(Path(sys.executable).with_name("canon"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load(url: str, body: bytes, seconds: float, clients: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run() -> None:
        mine: list[float] = []
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop:
                t = time.perf_counter()
                answer = client.post(url, content=body,
                                     headers={"content-type": "application/json"})
                mine.append(time.perf_counter() - t)
                if answer.status_code != 200:
                    with lock:
                        failures[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures[0]


def summary(latencies: list[float], failures: int, seconds: float) -> dict[str, float]:
    q = statistics.quantiles(latencies, n=100)
    return {"rps": round(len(latencies) / seconds, 1), "p50_ms": round(q[49] * 1000, 1),
            "p99_ms": round(q[98] * 1000, 1), "failures": failures, "n": len(latencies)}


def report(name: str, latencies: list[float], failures: int, seconds: float) -> str:
    q = statistics.quantiles(latencies, n=100)
    return (f"{name:<8} {len(latencies) / seconds:8.1f} req/s  p50 {q[49] * 1000:6.1f} ms  "
            f"p99 {q[98] * 1000:6.1f} ms  failures {failures}  (n={len(latencies)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results: dict[str, object] = {"clients": args.clients, "seconds": args.seconds}
    work = Path(tempfile.mkdtemp(prefix="canon-bench-serve-"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    try:
        subprocess.run([CANON, "init", str(work / "w"), "--example", "weather"], check=True,
                       env=env, capture_output=True)
        root = work / "w"
        # the stages only: serving from the workspace needs no image build
        subprocess.run([CANON, "apply", "evaluate"], cwd=root, check=True, env=env,
                       capture_output=True)
        sys.path.insert(0, str(root / "src"))
        from weather.serve import example  # type: ignore[import-not-found]

        days = example()
        port = free_port()
        server = subprocess.Popen([CANON, "serve", "--port", str(port)], cwd=root, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    if httpx.get(url + "/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            single = json.dumps({"inputs": days}).encode()
            batch = json.dumps({"instances": [days] * 32}).encode()
            results["load_before"] = round(os.getloadavg()[0], 2)
            for name, body in (("single", single), ("batch32", batch)):
                latencies, failures = load(url + "/predict", body, args.seconds, args.clients)
                results[name] = summary(latencies, failures, args.seconds)
                if not args.json:
                    print(report(name, latencies, failures, args.seconds))
            results["load_after"] = round(os.getloadavg()[0], 2)
            if args.json:
                print(json.dumps(results))
            else:
                print(f"load average before/after: {results['load_before']} / "
                      f"{results['load_after']} (2 cores here)")
        finally:
            os.kill(server.pid, signal.SIGTERM)
            server.wait(15)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
