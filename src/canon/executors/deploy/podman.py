"""The podman target: the real model image in containers, behind the local target's router.

Everything but the backends is the local target's (``local.py``): the router process on
the declared port, the rollout (start → every ``/readyz`` → switch → re-check → drain →
stop the old), the rollback when a version never gets ready or fails after the switch, the
state file and its observation. The backends are containers:

- the image goes from ``.canon/images`` into podman's storage once: its blobs (verified)
  are hard-linked into a one-image OCI layout that ``podman pull oci:DIR:canon`` reads
  (podman names it ``localhost/oci-<digest>-<pid>``, after the directory);
  podman names it by its config digest (the image ID), which is what ``podman run``
  starts, so no tag can move under a deployment;
- ``podman run -d --network host --pull never`` (never the default network: the server
  binds 127.0.0.1 on a free port, given as ``PORT``; ``CANON_HOST=127.0.0.1``), the
  image's own entrypoint (``canon serve`` from its runtime layer), labelled with the
  project's deployment and the image digest (``CANON_IMAGE_DIGEST``, which
  ``/provenance`` reports, so a container answering on the port can be checked);
- stopped with ``podman stop`` (SIGTERM: uvicorn finishes in-flight requests) and
  ``podman rm``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from canon.declare.project import DeploymentSpec
from canon.digest import Digest
from canon.errors import DeployTargetError, ImageError
from canon.events import Emit
from canon.executors.deploy.local import STOP_SECONDS, LocalDeployer, free_port
from canon.executors.deploy.target import Backend, Release, Rollout
from canon.observe.deployments import (
    DEPLOYMENT_LABEL,
    DIGEST_LABEL,
    Live,
    deployment_label,
    observe_podman,
    podman_binary,
    podman_containers,
)
from canon.stores.oci import spec as oci
from canon.stores.oci.layout import ImageLayout

REF = "canon"  # the one image's name in the temporary layout


class PodmanDeployer(LocalDeployer):
    def __init__(self, root: Path, layout: ImageLayout, podman: str | None = None) -> None:
        super().__init__(root, layout)
        self.podman = podman or podman_binary()

    def _run(self, *args: str, timeout: float = 300, cwd: Path | None = None) -> str:
        try:
            done = subprocess.run(
                [self.podman, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd=cwd,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DeployTargetError(f"podman {args[0]} failed: {exc}") from exc
        if done.returncode != 0:
            raise DeployTargetError(
                f"podman {args[0]} failed: {done.stderr.strip()[-500:]}",
                hint="check `podman info` as the user canon runs as",
            )
        return done.stdout

    def observe(self, spec: DeploymentSpec) -> Live:
        return observe_podman(self.root, spec)

    def prepare(self, spec: DeploymentSpec, release: Release) -> str:
        """The image's ID in podman's storage (its config digest), loaded if missing."""
        digest = Digest(release.digest)
        if not self.layout.has_blob(digest):
            raise ImageError(
                f"image {digest[:19]}… is not in {self.layout.root}",
                hint="build it with `canon build` or fetch it with `canon pull-image`",
            )
        manifest_bytes = self.layout.read_bytes(digest)
        manifest = oci.parse_manifest(manifest_bytes)
        image_id = manifest.config.digest[7:]
        exists = subprocess.run(
            [self.podman, "image", "exists", image_id], capture_output=True, check=False
        )
        if exists.returncode == 0:
            return image_id
        home = self.home(spec.name)
        home.mkdir(parents=True, exist_ok=True)
        # podman 4 names an image pulled from oci:PATH after PATH, which must then be a
        # valid repository name: a relative, lowercase one (run from its parent)
        staging = home / f"oci-{digest[7:19]}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            blobs = staging / "blobs" / "sha256"
            blobs.mkdir(parents=True)
            for blob in (manifest.config, *manifest.layers):
                self.layout.verify(blob.digest, blob.size)
                _link(self.layout.blob_path(blob.digest), blobs / blob.digest[7:])
            (blobs / digest[7:]).write_bytes(manifest_bytes)
            (staging / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
            index = {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": oci.MANIFEST,
                        "digest": digest,
                        "size": len(manifest_bytes),
                        "annotations": {"org.opencontainers.image.ref.name": REF},
                    }
                ],
            }
            (staging / "index.json").write_text(json.dumps(index))
            self._run("pull", "--quiet", f"oci:{staging.name}:{REF}", cwd=home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return image_id

    def start_server(self, spec: DeploymentSpec, prepared: str, release: Release) -> Backend:
        port = free_port()
        name = f"canon-{spec.name}-{release.digest[7:19]}-{port}"
        self._run(
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "host",
            "--pull",
            "never",
            "--label",
            f"{DEPLOYMENT_LABEL}={deployment_label(self.root, spec.name)}",
            "--label",
            f"{DIGEST_LABEL}={release.digest}",
            "--env",
            f"PORT={port}",
            "--env",
            "CANON_HOST=127.0.0.1",
            "--env",
            f"CANON_IMAGE_DIGEST={release.digest}",
            prepared,
            timeout=120,
        )
        return Backend(0, port, release.digest, name)

    def _state(self, backend: Backend) -> str:
        done = subprocess.run(
            [self.podman, "inspect", "--format", "{{.State.Status}}", str(backend.container)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        return done.stdout.strip() if done.returncode == 0 else "gone"

    def running(self, backend: Backend) -> bool:
        return self._state(backend) == "running"

    def serving(self, backend: Backend) -> bool:
        return backend.container is not None and self.running(backend)

    def stop_backends(self, backends: list[Backend]) -> None:
        self._remove([str(b.container) for b in backends if b.container])

    def _remove(self, names: list[str]) -> None:
        """Stop (SIGTERM, then SIGKILL after STOP_SECONDS), keep each one's output in
        ``.canon/deploy/.podman-logs/<name>.log`` (why a version never got ready is often
        there), remove."""
        if not names:
            return
        subprocess.run(
            [self.podman, "stop", "--time", str(int(STOP_SECONDS)), *names],
            capture_output=True,
            check=False,
            timeout=STOP_SECONDS + 60,
        )
        logs = self.home_logs()
        for name in names:
            with (logs / f"{name}.log").open("wb") as out:
                subprocess.run(
                    [self.podman, "logs", name],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                    timeout=60,
                )
        subprocess.run(
            [self.podman, "rm", "--force", *names], capture_output=True, check=False, timeout=60
        )

    def home_logs(self) -> Path:
        logs = self.root / ".canon" / "deploy" / ".podman-logs"
        logs.mkdir(parents=True, exist_ok=True)
        return logs

    def _sweep(self, spec: DeploymentSpec) -> None:
        """After a rollout (under the repo lock), every container labelled as this
        deployment's that is not the active version goes: dead ones, ones left by an
        interrupted rollout, one started by hand with the label (drift, healed)."""
        label = deployment_label(self.root, spec.name)
        active = {str(b.container) for b in self.load(spec.name).backends}
        self._remove(
            [c["name"] for c in podman_containers(self.podman, label) if c["name"] not in active]
        )

    def rollout(self, spec: DeploymentSpec, release: Release, emit: Emit) -> Rollout:
        result = super().rollout(spec, release, emit)
        self._sweep(spec)
        return result

    def stop(self, spec: DeploymentSpec) -> None:
        super().stop(spec)
        label = deployment_label(self.root, spec.name)
        self._remove([c["name"] for c in podman_containers(self.podman, label)])


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
