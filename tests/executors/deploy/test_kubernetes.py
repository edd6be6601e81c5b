"""The kubernetes target: manifests validated offline and strictly against the 1.33
schemas, kustomize-able, drift when edited by hand; kubectl behind a Protocol (fake)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from canon.declare.project import DeploymentSpec, DeployTarget
from canon.errors import DeployError
from canon.events import Event
from canon.executors.deploy.fake import FakeDeployer
from canon.executors.deploy.kubernetes import FakeKube, KubernetesDeployer
from canon.executors.deploy.manifests import Source, render
from canon.executors.deploy.target import Deployer, Release
from canon.executors.image.runtime import ENTRYPOINT
from tests.images.conftest import make_project

DIGEST = "sha256:" + "ab" * 32
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SPEC = DeploymentSpec(
    name="prod", target=DeployTarget.KUBERNETES, artifact="model", port=80, replicas=3,
    namespace="ml", cpu="500m", memory="256Mi",
)
SOURCE = Source("Weather_App", "https://github.com/acme/weather.git")


def events() -> list[Event]:
    return []


def test_manifests_are_valid_pinned_and_safe(tmp_path: Path) -> None:
    files = render(SPEC, SOURCE, "registry.example.com/weather/model:latest", DIGEST, COMMIT)
    assert files == render(SPEC, SOURCE, "registry.example.com/weather/model", DIGEST, COMMIT)
    deployment = yaml.safe_load(files["deploy/prod/deployment.yaml"])
    service = yaml.safe_load(files["deploy/prod/service.yaml"])
    for doc in (deployment, service):
        kubernetes_validate.validate(doc, "1.33.0", strict=True)
    assert deployment["metadata"]["name"] == "weather-app-prod"
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == f"registry.example.com/weather/model@{DIGEST}"
    # the image's own entrypoint (canon's model server, in every base), told its digest
    assert container["command"] == list(ENTRYPOINT)
    assert container["args"] == ["--port", "8080"]
    assert container["env"] == [{"name": "CANON_IMAGE_DIGEST", "value": DIGEST}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["canon.dev/image-digest"] == DIGEST
    assert annotations["org.opencontainers.image.revision"] == COMMIT
    assert service["spec"]["ports"][0] == {
        "name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"
    }
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]

    flux = yaml.safe_load(files["deploy/flux/prod.yaml"])
    assert flux["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert flux["spec"]["path"] == "./deploy/prod" and flux["spec"]["prune"] is True
    argo = yaml.safe_load(files["deploy/argocd/prod.yaml"])
    assert argo["kind"] == "Application"
    assert argo["spec"]["source"] == {
        "repoURL": "https://github.com/acme/weather.git", "targetRevision": "main",
        "path": "deploy/prod",
    }

    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is missing: `make system-deps` installs it"
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    built = subprocess.run([kubectl, "kustomize", str(tmp_path / "deploy/prod")],
                           capture_output=True, text=True, check=True, timeout=60).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(built)]
    assert sorted(kinds) == ["Deployment", "Service"]


def test_a_hand_edited_manifest_is_drift_and_a_rollout_heals_it(tmp_path: Path) -> None:
    kube = FakeKube()
    deployer = KubernetesDeployer(tmp_path, SOURCE, "registry.example.com/m", kube)
    release = Release("prod", "model", DIGEST, COMMIT)
    assert deployer.observe(SPEC).digest is None
    first = deployer.rollout(SPEC, release, events().append)
    assert first.outcome == "succeeded" and "rendered 5 file(s)" in first.reason
    assert set(kube.applied[0]) == {"deployment.yaml", "service.yaml", "kustomization.yaml"}
    live = deployer.observe(SPEC)
    assert live.digest == DIGEST and live.drift == ()

    path = tmp_path / "deploy/prod/deployment.yaml"
    path.write_text(path.read_text().replace("replicas: 3", "replicas: 1"))
    assert deployer.observe(SPEC).drift == (
        "deploy/prod/deployment.yaml was edited by hand (differs from the rendering)",
    )
    healed = deployer.rollout(SPEC, release, events().append)
    assert healed.outcome == "succeeded" and "rendered 1 file(s)" in healed.reason
    assert deployer.observe(SPEC).drift == ()

    kube.fail = "connection refused"
    with pytest.raises(DeployError, match="kubectl apply failed: connection refused"):
        deployer.rollout(SPEC, release, events().append)


@pytest.mark.parametrize("kind", ["fake", "kubernetes"])
def test_deployer_conformance(kind: str, tmp_path: Path) -> None:
    """Every target: a rollout reaches the release; the same release again changes nothing;
    a newer release replaces it and names the previous one."""
    deployer: Deployer = (
        FakeDeployer() if kind == "fake"
        else KubernetesDeployer(tmp_path, SOURCE, "registry.example.com/m")
    )
    one = Release("prod", "model", DIGEST, COMMIT)
    two = Release("prod", "model", "sha256:" + "cd" * 32, COMMIT[::-1])
    assert deployer.observe(SPEC).digest is None
    assert deployer.rollout(SPEC, one, events().append).ok
    assert deployer.observe(SPEC).digest == one.digest
    again = deployer.rollout(SPEC, one, events().append)
    assert again.outcome == "unchanged"
    moved = deployer.rollout(SPEC, two, events().append)
    assert moved.outcome == "succeeded" and moved.previous == one.digest
    live = deployer.observe(SPEC)
    assert live.digest == two.digest and live.drift == () and live.healthy


def test_canon_deploy_renders_a_kubernetes_deployment(tmp_path: Path) -> None:
    p = make_project(tmp_path / "toy")
    with (p.root / "canon.yaml").open("a") as f:
        f.write("deployments:\n  prod: {target: kubernetes, artifact: model, replicas: 2,"
                " image: registry.example.com/toy/model}\n")
    p.git("commit", "-qam", "deploy")
    status = p.canon("status", check=False)
    assert "deploy  deployment.prod" in status.stdout
    applied = p.canon("apply")  # builds the images, then renders deploy/
    assert "deployment.prod succeeded: rendered 5 file(s)" in applied.stdout
    done = p.canon("deploy", "prod")
    assert "unchanged" in done.stdout and "manifests already rendered" in done.stdout
    digest = p.digest("model")
    doc = yaml.safe_load((p.root / "deploy/prod/deployment.yaml").read_text())
    assert doc["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"registry.example.com/toy/model@{digest}"
    )
    assert p.canon("deploy", "--status", "prod", check=False).returncode == 0
    (p.root / "deploy/prod/service.yaml").write_text("edited: true\n")
    status = p.canon("deploy", "--status", "prod", check=False)
    assert status.returncode == 1 and "service.yaml was edited by hand" in status.stdout
