"""An in-memory Deployer: records releases, and can be told that a digest never gets
ready or that a replica died (for tests of apply, status and rollback)."""

from __future__ import annotations

from dataclasses import dataclass, field

from canon.declare.project import DeploymentSpec
from canon.events import Emit
from canon.executors.deploy.target import Live, Release, Rollout


@dataclass
class FakeDeployer:
    running: dict[str, str] = field(default_factory=dict)  # environment -> digest
    broken: set[str] = field(default_factory=set)  # digests whose /readyz never passes
    died: set[str] = field(default_factory=set)  # environments whose processes died
    history: list[Rollout] = field(default_factory=list)

    def observe(self, spec: DeploymentSpec) -> Live:
        digest = self.running.get(spec.name)
        if digest is None:
            return Live(spec.name, None)
        if spec.name in self.died:
            return Live(spec.name, None, 0, spec.replicas, ("every replica died",))
        return Live(spec.name, digest, spec.replicas, spec.replicas)

    def rollout(self, spec: DeploymentSpec, release: Release, emit: Emit) -> Rollout:
        previous = self.running.get(spec.name)
        if previous == release.digest and spec.name not in self.died:
            result = Rollout(spec.name, release.digest, previous, "unchanged", "already running")
        elif release.digest in self.broken:
            result = Rollout(
                spec.name, release.digest, previous, "rolled_back", "/readyz never passed"
            )
        else:
            self.running[spec.name] = release.digest
            self.died.discard(spec.name)
            result = Rollout(spec.name, release.digest, previous, "succeeded", "ready")
        self.history.append(result)
        return result

    def stop(self, spec: DeploymentSpec) -> None:
        self.running.pop(spec.name, None)
