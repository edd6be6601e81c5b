"""Kubernetes manifests for a deployment, rendered deterministically (pure: no I/O).

    deploy/<env>/deployment.yaml     apps/v1 Deployment, image pinned by digest
    deploy/<env>/service.yaml        v1 Service (ClusterIP) on the declared port
    deploy/<env>/kustomization.yaml  the two, for `kubectl kustomize` / Flux / Argo CD
    deploy/flux/<env>.yaml           a Flux Kustomization syncing deploy/<env>
    deploy/argocd/<env>.yaml         an Argo CD Application syncing deploy/<env>

Committing these files *is* the deployment: Flux or Argo CD applies them. The Deployment
rolls out with ``maxUnavailable: 0`` (a new pod must pass ``/readyz`` before an old one
goes), probes ``/readyz`` (readiness) and ``/healthz`` (liveness), runs as non-root with a
read-only root filesystem, and carries its provenance as labels and annotations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from canon.declare.project import DeploymentSpec
from canon.executors.image.runtime import ENTRYPOINT

CONTAINER_PORT = 8080
MANAGED_BY = "canon"
ANNOTATION = "canon.dev"


@dataclass(frozen=True)
class Source:
    """Where the manifests come from, for the Flux / Argo CD objects."""

    project: str
    repo_url: str  # the Git repository Flux / Argo CD read
    branch: str = "main"
    flux_source: str | None = None  # a Flux GitRepository's name (default: the project)


def dns_name(*parts: str) -> str:
    """A DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return name[:63].rstrip("-") or "canon"


def image_ref(repository: str, digest: str) -> str:
    """``repo@digest``: any tag or digest on ``repository`` is dropped (the pin wins)."""
    repo = repository.split("@", 1)[0]
    head, _, last = repo.rpartition("/")
    last = last.split(":", 1)[0]  # a tag; a registry's :port sits before the last '/'
    return f"{head}/{last}@{digest}" if head else f"{last}@{digest}"


def render(
    spec: DeploymentSpec,
    source: Source,
    repository: str,
    digest: str,
    commit: str,
) -> dict[str, bytes]:
    """{path relative to the project: file bytes}, the same for the same inputs."""
    name = dns_name(source.project, spec.name)
    selector = {
        "app.kubernetes.io/name": dns_name(source.project),
        "app.kubernetes.io/instance": name,
    }
    labels = {
        **selector,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/version": commit[:12] or "unknown",
        f"{ANNOTATION}/artifact": dns_name(spec.artifact),
    }
    annotations = {
        f"{ANNOTATION}/image-digest": digest,
        f"{ANNOTATION}/commit": commit,
        f"{ANNOTATION}/environment": spec.name,
        "org.opencontainers.image.revision": commit,
    }
    meta: dict[str, Any] = {"name": name, "labels": labels, "annotations": annotations}
    if spec.namespace:
        meta["namespace"] = spec.namespace
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": _pod(spec, image_ref(repository, digest), digest),
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {k: v for k, v in meta.items()},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["deployment.yaml", "service.yaml"],
    }
    here = f"deploy/{spec.name}"
    return {
        f"{here}/deployment.yaml": _yaml(deployment),
        f"{here}/service.yaml": _yaml(service),
        f"{here}/kustomization.yaml": _yaml(kustomization),
        f"deploy/flux/{spec.name}.yaml": _yaml(flux_kustomization(spec, source, name, here)),
        f"deploy/argocd/{spec.name}.yaml": _yaml(argo_application(spec, source, name, here)),
    }


def _pod(spec: DeploymentSpec, image: str, digest: str) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    amounts = {k: v for k, v in (("cpu", spec.cpu), ("memory", spec.memory)) if v}
    if amounts:
        resources = {"requests": dict(amounts), "limits": dict(amounts)}
    probe = {"port": "http", "scheme": "HTTP"}
    return {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "model",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                # the image's own entrypoint: `canon serve --image-root /` on 0.0.0.0
                # (executors.image.runtime.LAUNCHER), told the digest it runs as
                "command": list(ENTRYPOINT),
                "args": ["--port", str(CONTAINER_PORT)],
                "env": [{"name": "CANON_IMAGE_DIGEST", "value": digest}],
                "workingDir": "/canon/repo",
                "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
                "readinessProbe": {
                    "httpGet": {"path": "/readyz", **probe},
                    "periodSeconds": 5,
                    "failureThreshold": 3,
                },
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", **probe},
                    "periodSeconds": 10,
                    "failureThreshold": 3,
                },
                "startupProbe": {
                    "httpGet": {"path": "/healthz", **probe},
                    "periodSeconds": 2,
                    "failureThreshold": max(1, int(spec.ready_timeout // 2)),
                },
                "resources": resources,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }


def flux_kustomization(
    spec: DeploymentSpec, source: Source, name: str, path: str
) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": "flux-system"},
        "spec": {
            "interval": "1m",
            "path": f"./{path}",
            "prune": True,
            "wait": True,
            "timeout": "5m",
            "sourceRef": {
                "kind": "GitRepository",
                "name": source.flux_source or dns_name(source.project),
            },
            **({"targetNamespace": spec.namespace} if spec.namespace else {}),
        },
    }


def argo_application(spec: DeploymentSpec, source: Source, name: str, path: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": source.repo_url, "targetRevision": source.branch, "path": path},
            "destination": {
                "server": "https://kubernetes.default.svc",
                "namespace": spec.namespace or "default",
            },
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["ServerSideApply=true"],
            },
        },
    }


def _yaml(doc: Mapping[str, Any]) -> bytes:
    header = "# Rendered by canon from canon.yaml and canon.lock: edit those, not this file.\n"
    return (header + yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False)).encode()
