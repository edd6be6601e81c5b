"""Roll the declared deployments out to their targets, and record every rollout.

    declared (canon.yaml deployments: + the image pinned in canon.lock for its profile)
      -> Release -> deployer.rollout -> Rollout -> ledger (rollouts table)

The image deployed is the one canon.lock pins for the deployment's profile: what runs
follows Git. A target that is already at that digest and healthy is left alone
(``unchanged``); one that drifted (a process died, another version answers on the port)
is rolled out again, which heals it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from canon.declare.memo import load_project_memoised
from canon.declare.project import DeploymentSpec, DeployTarget, Project
from canon.errors import DeployError, DeployTargetError
from canon.events import Emit, Notice
from canon.executors.deploy.target import Deployer, Live, Release, Rollout
from canon.executors.notify import Message, Notifier, WebhookNotifier
from canon.plan.observed import DeploymentObservation
from canon.stores.ledger import Ledger
from canon.stores.lockfile import read_lock

LEDGER = Path(".canon") / "ledger.db"


def select(project: Project, names: Sequence[str]) -> list[DeploymentSpec]:
    if not names:
        return list(project.deployments.values())
    unknown = [n for n in names if n not in project.deployments]
    if unknown:
        from canon.declare.diagnostics import did_you_mean

        hint = did_you_mean(unknown[0], project.deployments) or (
            "declared: " + ", ".join(project.deployments)
            if project.deployments
            else "none is declared: add one under deployments: in canon.yaml"
        )
        raise DeployError(f"unknown deployment {', '.join(unknown)}", hint=hint)
    return [project.deployments[n] for n in names]


def release_of(root: Path, project: Project, spec: DeploymentSpec) -> Release:
    """The image canon.lock pins for the deployment's artifact under its profile."""
    profile = spec.profile or project.profile
    record = read_lock(root).state(profile).images.get(spec.artifact)
    if record is None:
        raise DeployError(
            f"deployment {spec.name}: canon.lock records no image {spec.artifact} "
            f"for profile {profile}",
            hint="run `canon apply` (or `canon build`) to build it first",
        )
    return Release(spec.name, spec.artifact, str(record.digest), record.commit)


def deployer_for(
    root: Path, project: Project, spec: DeploymentSpec, *, kubectl: bool = False
) -> Deployer:
    if spec.target is DeployTarget.LOCAL:
        from canon.apply.images import layout_of
        from canon.executors.deploy.local import LocalDeployer

        return LocalDeployer(root, layout_of(root))
    if spec.target is DeployTarget.PODMAN:
        from canon.apply.images import layout_of
        from canon.executors.deploy.podman import PodmanDeployer

        return PodmanDeployer(root, layout_of(root))
    from canon.executors.deploy.kubernetes import Kubectl, KubernetesDeployer
    from canon.executors.deploy.manifests import Source
    from canon.executors.image.repo import origin_url

    source = Source(
        project.name, origin_url(root) or f"https://git.example.invalid/{project.name}.git"
    )
    return KubernetesDeployer(
        root, source, repository_of(root, project, spec), Kubectl() if kubectl else None
    )


def repository_of(root: Path, project: Project, spec: DeploymentSpec) -> str:
    """``image:`` of the deployment, else the profile's ``registry``/<artifact>."""
    if spec.image:
        return spec.image
    values = (
        load_project_memoised(root, profile=spec.profile).profile_values
        if spec.profile and spec.profile != project.profile
        else project.profile_values
    )
    registry = values.get("registry")
    if not isinstance(registry, str) or not registry or registry.startswith("oci-layout:"):
        raise DeployError(
            f"deployment {spec.name}: no registry to pull {spec.artifact} from",
            hint="set image: registry.example.com/team/model on the deployment, or "
            "registry: in its profile (and `canon push-image` there)",
        )
    return f"{registry.rstrip('/')}/{spec.artifact}"


def roll_out(
    root: Path,
    *,
    profile: str | None,
    names: Sequence[str] = (),
    emit: Emit,
    deployers: dict[str, Deployer] | None = None,
    kubectl: bool = False,
    notifier: Notifier | None = None,
) -> list[Rollout]:
    """Roll every selected deployment to its pinned image; each outcome goes to the ledger."""
    project = load_project_memoised(root, profile=profile)
    results: list[Rollout] = []
    ledger = Ledger(root / LEDGER)
    try:
        for spec in select(project, names):
            release = release_of(root, project, spec)
            deployer = (deployers or {}).get(spec.name) or deployer_for(
                root, project, spec, kubectl=kubectl
            )
            emit(Notice(f"{spec.name}: rolling out {spec.artifact} {release.digest[:19]}…"))
            result = deployer.rollout(spec, release, emit)
            ledger.record_rollout(
                environment=spec.name,
                target=spec.target.value,
                artifact=spec.artifact,
                digest=result.digest,
                previous=result.previous,
                commit=release.commit,
                outcome=result.outcome,
                reason=result.reason,
                duration=result.duration,
            )
            results.append(result)
            _notify(project, spec, release, result, emit, notifier)
    finally:
        ledger.close()
    return results


def _notify(
    project: Project,
    spec: DeploymentSpec,
    release: Release,
    result: Rollout,
    emit: Emit,
    notifier: Notifier | None,
) -> None:
    """Tell the profile's webhook (``notify: ENV_VAR`` naming the URL's variable)."""
    if result.outcome == "unchanged":
        return
    if notifier is None:
        variable = project.profile_values.get("notify")
        if not isinstance(variable, str) or not variable:
            return
        url = os.environ.get(variable, "")
        if not url:
            emit(Notice(f"notifications skipped: ${variable} is not set"))
            return
        notifier = WebhookNotifier(url)
    if result.outcome == "rolled_back":
        event, verb = "rolled_back", "was rolled back"
    elif result.previous == result.digest:
        event, verb = "drift_healed", "drift healed"
    else:
        event, verb = "rollout_succeeded", "rolled out"
    text = (
        f"canon: {project.name}/{spec.name} {verb}: {spec.artifact} "
        f"{result.digest[:19]}… (commit {release.commit[:12]}) — {result.reason}"
    )
    fields = {
        "digest": result.digest,
        "previous": result.previous,
        "commit": release.commit,
        "outcome": result.outcome,
        "reason": result.reason,
    }
    problem = notifier.send(Message(event, spec.name, text, fields))
    if problem is not None:
        emit(Notice(f"notification for {spec.name} not delivered: {problem}"))


def observe_all(
    root: Path, *, profile: str | None, names: Sequence[str] = ()
) -> list[tuple[DeploymentSpec, str | None, Live]]:
    """(spec, declared digest, live) for each deployment."""
    project = load_project_memoised(root, profile=profile)
    found = []
    for spec in select(project, names):
        try:
            declared: str | None = release_of(root, project, spec).digest
        except DeployError:
            declared = None
        found.append((spec, declared, deployer_for(root, project, spec).observe(spec)))
    return found


def observe_deployments(root: Path, project: Project) -> dict[str, DeploymentObservation]:
    """What each deployment runs now, for the planner."""
    found: dict[str, DeploymentObservation] = {}
    for spec in project.deployments.values():
        try:
            live = deployer_for(root, project, spec).observe(spec)
        except DeployError as exc:
            found[spec.name] = DeploymentObservation(None, False, (exc.message,))
            continue
        found[spec.name] = DeploymentObservation(live.digest, live.healthy, live.drift)
    return found


def roll_out_checked(root: Path, *, profile: str | None, names: Sequence[str], emit: Emit) -> None:
    """``roll_out`` for ``canon apply``: a rollout that was rolled back fails the apply."""
    results = roll_out(root, profile=profile, names=names, emit=emit)
    for r in results:
        emit(Notice(f"deployment.{r.environment} {r.outcome}: {r.reason}"))
    failed = [r for r in results if not r.ok]
    if failed:
        raise DeployTargetError(
            "; ".join(f"deployment {r.environment} rolled back: {r.reason}" for r in failed),
            hint="the previous version keeps serving; see `canon deploy --status`",
        )


@contextlib.contextmanager
def repo_locked(root: Path, argv: Sequence[str], wait: float = 30.0) -> Iterator[None]:
    """The apply lock, for `canon deploy` / `canon rollback` (apply holds it already):
    the CLI, the controller and another rollout never change a deployment at once."""
    from canon.stores.repolock import RepoLock

    with RepoLock(root / ".canon" / "apply.lock") as lock:
        lock.acquire(argv, wait=wait)
        yield


def stop(root: Path, *, profile: str | None, names: Sequence[str]) -> None:
    project = load_project_memoised(root, profile=profile)
    for spec in select(project, names):
        if spec.target in (DeployTarget.LOCAL, DeployTarget.PODMAN):
            deployer_for(root, project, spec).stop(spec)
