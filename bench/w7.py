"""W7 inside bench/run.py (``--only w7``): the model server and rollouts (issue 5).

No DVC row: DVC does not serve. Two scripts, each run once (they are load tests: their
own medians are over thousands of requests):

- bench/serve.py: `canon serve` on the weather model, 4 keep-alive clients for 10 s,
  single and batch-of-32 /predict: requests/s, p50, p99, failures;
- bench/rollout.py: the example on the local target, 2 clients sending /predict all the
  time while `canon apply` rolls out a new model (params changed) and then a version
  whose self-check fails (rolled back automatically): requests, failures, versions seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(script: str, *args: str, timeout: float) -> dict[str, Any]:
    done = subprocess.run([sys.executable, os.path.join(HERE, script), "--json", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{script} failed ({done.returncode}): {done.stderr[-600:]}")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def w7(b: Any, ns: dict[str, Any]) -> None:
    lines: list[str] = []
    try:
        served = _run("serve.py", "--seconds", "10", "--clients", "4", timeout=600)
        lines += ["`canon serve` (uvicorn, one process) on the weather model, "
                  f"{served['clients']} keep-alive clients for {served['seconds']:g} s each "
                  f"(load average {served['load_before']} before, {served['load_after']} "
                  "after):", "",
                  "| /predict | requests/s | p50 | p99 | failed | requests |",
                  "|---|---|---|---|---|---|"]
        for name, what in (("single", "one input (9 days -> 3 predictions)"),
                           ("batch32", "batch of 32 inputs")):
            r = served[name]
            lines.append(f"| {what} | {r['rps']} | {r['p50_ms']} ms | {r['p99_ms']} ms | "
                         f"{r['failures']} | {r['n']} |")
        lines.append("")
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        b.notes.append(f"W7 serve: {exc}")
    try:
        rolled = _run("rollout.py", "--clients", "2", timeout=900)
        lines += ["Rollouts on the local target under load (`bench/rollout.py`: "
                  f"{rolled['clients']} clients sending /predict all the time; the versions "
                  "column counts /provenance answers by image digest):", "",
                  "| step | `canon apply` | exit | requests | failed | versions that answered |",
                  "|---|---|---|---|---|---|",
                  f"| v1: first apply (stages, images, rollout; no load yet) | "
                  f"{rolled['v1']['apply_s']} s | {rolled['v1']['exit']} | — | — | — |"]
        for step, what in (("v2", "v2: train.C changed (train, evaluate, model image, "
                                  "rollout)"),
                           ("broken", "a self-check that fails (never ready: rolled back)")):
            r = rolled[step]
            seen = ", ".join(f"{k}… {n}" for k, n in r["versions"].items())
            lines.append(f"| {what} | {r['apply_s']} s | {r['exit']} | {r['requests']} | "
                         f"**{r['failed']}** | {seen} |")
        lines.append("")
        if rolled["v2"]["failed"] or rolled["broken"]["failed"]:
            b.notes.append("W7: requests failed during a rollout (see the W7 table)")
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        b.notes.append(f"W7 rollout: {exc}")
    if lines:
        b.sections.append(("W7: the model server and rollouts (no DVC counterpart)", lines))
