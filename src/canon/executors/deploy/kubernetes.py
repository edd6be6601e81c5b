"""The kubernetes target: render the manifests into ``deploy/``, optionally apply them.

The GitOps way is to commit what ``rollout`` writes and let Flux or Argo CD sync it; with
a cluster at hand, ``kubectl apply --server-side`` goes through ``KubeClient`` (a
Protocol: ``Kubectl`` for real, ``FakeKube`` in tests — no API server runs here).

``observe`` reads what ``deploy/<env>/`` pins (the digest and commit in the Deployment's
annotations) and re-renders from them: a file that differs was edited by hand (drift).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from canon.declare.project import DeploymentSpec
from canon.errors import DeployError, DeployTargetError
from canon.events import Emit, Notice
from canon.executors.deploy.manifests import ANNOTATION, Source, render
from canon.executors.deploy.target import Live, Release, Rollout
from canon.stores.atomic import atomic_write


class KubeClient(Protocol):
    def apply(self, directory: Path) -> str:
        """Apply the kustomization in ``directory``; returns the tool's summary."""
        ...


@dataclass
class Kubectl:
    """``kubectl apply --server-side -k DIR`` with canon as the field manager."""

    kubeconfig: str | None = None
    context: str | None = None
    binary: str = "kubectl"

    def apply(self, directory: Path) -> str:
        argv = [
            self.binary,
            "apply",
            "--server-side",
            "--field-manager=canon",
            "-k",
            str(directory),
        ]
        if self.kubeconfig:
            argv[1:1] = ["--kubeconfig", self.kubeconfig]
        if self.context:
            argv[1:1] = ["--context", self.context]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DeployTargetError(
                f"kubectl failed to run: {exc}",
                hint="is kubectl installed and the cluster reachable?",
            ) from exc
        if done.returncode != 0:
            raise DeployTargetError(
                f"kubectl apply failed: {done.stderr.strip()[:500]}",
                hint="check the kubeconfig / context",
            )
        return done.stdout.strip()


@dataclass
class FakeKube:
    """Records what would have been applied (directory -> {file: bytes})."""

    applied: list[dict[str, bytes]] = field(default_factory=list)
    fail: str | None = None

    def apply(self, directory: Path) -> str:
        if self.fail:
            raise DeployTargetError(f"kubectl apply failed: {self.fail}")
        self.applied.append({p.name: p.read_bytes() for p in sorted(directory.iterdir())})
        return f"applied {directory.name}"


class KubernetesDeployer:
    def __init__(
        self, root: Path, source: Source, repository: str, client: KubeClient | None = None
    ) -> None:
        self.root = root
        self.source = source
        self.repository = repository
        self.client = client

    def desired(self, spec: DeploymentSpec, digest: str, commit: str) -> dict[str, bytes]:
        return render(spec, self.source, self.repository, digest, commit)

    def observe(self, spec: DeploymentSpec) -> Live:
        path = self.root / "deploy" / spec.name / "deployment.yaml"
        try:
            doc = yaml.safe_load(path.read_bytes())
            annotations = doc["metadata"]["annotations"]
            digest = str(annotations[f"{ANNOTATION}/image-digest"])
            commit = str(annotations[f"{ANNOTATION}/commit"])
        except FileNotFoundError:
            return Live(spec.name, None)
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            return Live(
                spec.name,
                None,
                0,
                spec.replicas,
                (f"deploy/{spec.name}/deployment.yaml is unreadable: {exc}",),
            )
        drift = []
        for rel, data in self.desired(spec, digest, commit).items():
            try:
                if (self.root / rel).read_bytes() != data:
                    drift.append(f"{rel} was edited by hand (differs from the rendering)")
            except FileNotFoundError:
                drift.append(f"{rel} is missing")
        # "ready" here means "rendered as declared": the cluster's own state is Flux's or
        # Argo CD's to report.
        return Live(spec.name, digest, spec.replicas, spec.replicas, tuple(drift))

    def rollout(self, spec: DeploymentSpec, release: Release, emit: Emit) -> Rollout:
        before = self.observe(spec)
        files = self.desired(spec, release.digest, release.commit)
        changed = [rel for rel, data in files.items() if _read(self.root / rel) != data]
        for rel in changed:
            atomic_write(self.root / rel, files[rel])
            emit(Notice(f"{spec.name}: wrote {rel}"))
        reason = (
            (
                f"rendered {len(changed)} file(s) into deploy/; commit them for Flux / "
                "Argo CD to sync"
            )
            if changed
            else "manifests already rendered"
        )
        if self.client is not None:
            reason += "; " + self.client.apply(self.root / "deploy" / spec.name)
        outcome = "succeeded" if changed or self.client is not None else "unchanged"
        return Rollout(spec.name, release.digest, before.digest, outcome, reason)

    def stop(self, spec: DeploymentSpec) -> None:
        raise DeployError(
            f"deployment {spec.name} is a kubernetes target: remove it from canon.yaml and "
            "commit; Flux / Argo CD prune it",
        )


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
