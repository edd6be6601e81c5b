"""``deployments:`` -> ``DeploymentSpec``: where a model image runs, checked.

Each deployment names a model artifact (not a base), an optional profile that exists, and
for ``target: local`` and ``target: podman`` (the same router, containers behind it) an
address on this machine; every problem is reported at once with
its YAML path, like the rest of the declaration.
"""

from __future__ import annotations

import ipaddress

from canon.declare.diagnostics import Problems, did_you_mean
from canon.declare.project import DeploymentSpec, DeployTarget
from canon.declare.schema import ProjectFile

__all__ = ["resolve_deployments"]


def resolve_deployments(decl: ProjectFile, problems: Problems) -> dict[str, DeploymentSpec]:
    """Resolve every deployment; broken ones are reported and left out."""
    found: dict[str, DeploymentSpec] = {}
    ports: dict[tuple[str, int], str] = {}
    for name, d in decl.deployments.items():
        at = ("deployments", name)
        ok = True
        artifact = decl.artifacts.get(d.artifact)
        if artifact is None:
            problems.add(
                (*at, "artifact"),
                f'unknown artifact "{d.artifact}"',
                did_you_mean(d.artifact, decl.artifacts)
                or "declare it under artifacts: with kind: model",
            )
            ok = False
        elif artifact.kind != "model":
            problems.add(
                (*at, "artifact"),
                f'"{d.artifact}" is a {artifact.kind} image; a deployment runs a model image',
            )
            ok = False
        elif artifact.serve is None:
            problems.add(
                (*at, "artifact"),
                f'"{d.artifact}" declares no serve: {{handler: ...}}',
                "the model server calls that handler",
            )
            ok = False
        if d.profile is not None and d.profile not in decl.profiles:
            problems.add(
                (*at, "profile"),
                f'unknown profile "{d.profile}"',
                did_you_mean(d.profile, decl.profiles) or "declare it under profiles:",
            )
            ok = False
        target = DeployTarget(d.target)
        if target in (DeployTarget.LOCAL, DeployTarget.PODMAN):
            try:
                ipaddress.ip_address(d.host)
            except ValueError:
                problems.add((*at, "host"), f'"{d.host}" is not an IP address', "e.g. 127.0.0.1")
                ok = False
            other = ports.get((d.host, d.port))
            if other is not None:
                problems.add((*at, "port"), f"port {d.port} is already used by deployment {other}")
                ok = False
            ports[(d.host, d.port)] = name
        if not ok:
            continue
        found[name] = DeploymentSpec(
            name=name,
            target=target,
            artifact=d.artifact,
            port=d.port,
            host=d.host,
            replicas=d.replicas,
            profile=d.profile,
            cpu=d.resources.cpu if d.resources else None,
            memory=d.resources.memory if d.resources else None,
            namespace=d.namespace,
            image=d.image,
            ready_timeout=d.ready_timeout,
            line=problems.source_map.line_of(at),
        )
    return found
