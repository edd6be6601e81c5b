"""What ``canon.observe`` saw, handed to the pure planner.

Everything the planner needs is here as values, so planning does no I/O and
is tested from tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from canon.digest import Digest
from canon.stores.records import Content, Lock, RunRecord


@dataclass(frozen=True)
class Observed:
    lock: Lock
    contents: Mapping[str, Content | None]  # workspace path -> content (None: missing)
    environment: Digest  # digest of the python version and requirements lock
    runs: Mapping[Digest, RunRecord] = field(default_factory=dict)  # run cache hits
    cached: frozenset[Digest] = frozenset()  # output digests present in the object store
    commit: str | None = None
