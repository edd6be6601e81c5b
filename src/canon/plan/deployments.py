"""Deployments in the plan: which to DEPLOY after the images, and why. Pure.

A deployment is a graph node after the model image it runs. The declared image is the one
canon.lock pins for the artifact under the deployment's profile. Reasons, first match wins:

- ``UPSTREAM_CHANGED model`` — its image will be built in this apply, so the digest it
  will run is not known yet (apply rolls it out after the build);
- (no image pinned and none being built: NOOP — nothing to deploy yet);
- ``NEVER_DEPLOYED`` — nothing runs (local) or is rendered (kubernetes);
- ``DIGEST_CHANGED`` — what runs is not the pinned digest (before: live, after: declared);
- ``DEPLOYMENT_DRIFT`` — the right digest, but a process died, the port answers with
  another version, or a rendered manifest was edited (one reason per drift).
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from canon.declare.project import Project
from canon.plan.change import Action, Change, Reason, Why
from canon.plan.observed import DeploymentObservation
from canon.stores.records import ProfileState


def plan_deployments(
    project: Project,
    state: ProfileState,
    observed: Mapping[str, DeploymentObservation],
    building: Set[str],
) -> list[Change]:
    """One Change per deployment, DEPLOY or NOOP. ``state`` is the lock's state for the
    project's profile; a deployment with another ``profile:`` reads its pin from
    ``observed`` (apply resolves it), so only same-profile pins are read here."""
    changes: list[Change] = []
    for spec in project.deployments.values():
        seen = observed.get(spec.name, DeploymentObservation())
        address = f"deployment.{spec.name}"
        record = state.images.get(spec.artifact)
        declared = str(record.digest) if record is not None else None
        reasons: list[Why] = []
        if spec.artifact in building:
            reasons.append(Why(Reason.UPSTREAM_CHANGED, spec.artifact))
        elif declared is None:
            changes.append(Change(address, Action.NOOP))  # nothing pinned to deploy yet
            continue
        elif seen.digest is None and not seen.drift:
            reasons.append(Why(Reason.NEVER_DEPLOYED))
        elif seen.digest != declared:
            reasons.append(Why(Reason.DIGEST_CHANGED, spec.artifact, seen.digest, declared))
        reasons += [Why(Reason.DEPLOYMENT_DRIFT, after=text) for text in seen.drift]
        if not reasons and not seen.healthy:
            reasons.append(Why(Reason.DEPLOYMENT_DRIFT, after="not every replica is ready"))
        changes.append(
            Change(address, Action.DEPLOY if reasons else Action.NOOP, tuple(reasons), declared)
        )
    return changes
