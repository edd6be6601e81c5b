"""What a deploy target does, as data and one Protocol.

A ``Release`` is what should run (a model image by digest, from a commit). ``Live`` is
what runs, as observed, with every drift named. ``rollout`` moves a target from what runs
to the release and returns what really happened: ``succeeded``, ``unchanged``, or
``rolled_back`` (the new version never got ready or failed after the switch; the old one
kept or got the traffic back) — never a half-switched state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from canon.declare.project import DeploymentSpec
from canon.events import Emit
from canon.observe.deployments import Live

__all__ = ["Backend", "Deployer", "Live", "Release", "Rollout"]


@dataclass(frozen=True)
class Release:
    environment: str
    artifact: str
    digest: str  # the model image's manifest digest
    commit: str


@dataclass(frozen=True)
class Backend:
    pid: int  # 0 for a container (podman target)
    port: int
    digest: str
    container: str | None = None  # the podman target's container name

    def doc(self) -> dict[str, object]:
        """As recorded in the target's state file."""
        found: dict[str, object] = {"pid": self.pid, "port": self.port}
        if self.container is not None:
            found["container"] = self.container
        return found

    def describe(self) -> str:
        return f"container {self.container}" if self.container else f"server pid {self.pid}"


@dataclass(frozen=True)
class Rollout:
    environment: str
    digest: str
    previous: str | None
    outcome: str  # succeeded | unchanged | rolled_back
    reason: str
    duration: float = 0.0
    backends: tuple[Backend, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.outcome in {"succeeded", "unchanged"}


class Deployer(Protocol):
    """One target. Implementations: LocalDeployer (processes), PodmanDeployer (containers
    behind the same router), KubernetesDeployer (manifests + kubectl), FakeDeployer."""

    def observe(self, spec: DeploymentSpec) -> Live: ...

    def rollout(self, spec: DeploymentSpec, release: Release, emit: Emit) -> Rollout: ...

    def stop(self, spec: DeploymentSpec) -> None: ...
