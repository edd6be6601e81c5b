"""Stage keys: the digest of everything that determines a stage's outputs.

Two runs with the same key are interchangeable: that is what lets the run
cache restore outputs instead of running again. The key covers the command,
the environment variables it gets, the environment digest, every dep's
digest, every param value and the declared outputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from canon.declare.project import StageSpec
from canon.digest import Digest, hash_bytes


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def environment_digest(python: str | None, requirements: Digest | None) -> Digest:
    return hash_bytes(canonical_json({"python": python, "requirements": requirements}))


def stage_key(stage: StageSpec, deps: Mapping[str, Digest], environment: Digest) -> Digest:
    return hash_bytes(
        canonical_json(
            {
                "cmd": list(stage.argv),
                "shell": stage.shell,
                "env": [list(kv) for kv in stage.env],
                "environment": environment,
                "deps": dict(sorted(deps.items())),
                "params": [list(kv) for kv in stage.param_values],
                "outs": list(stage.outs),
            }
        )
    )


def recorded_env(stage: StageSpec) -> dict[str, str]:
    """The env vars worth recording in the lock: the declared ones, not canon's own."""
    return {k: v for k, v in stage.env if not k.startswith("CANON_")}
