"""Images in the plan: which artifacts to BUILD after the stages, and why. Pure.

An artifact is a graph node after the stages whose outputs it ``add:``s (a
model) and after its base. Reasons, first match wins:

- ``UPSTREAM_CHANGED train`` — a stage producing one of its files will run or
  be restored, so its key cannot be known before apply (apply builds it after);
- ``UPSTREAM_CHANGED base`` — its base image will be rebuilt;
- ``NEVER_BUILT`` — no image recorded under this profile;
- ``INPUTS_CHANGED`` — the key of its inputs is not the recorded one (with why
  the key is unknown, when it is);
- ``IMAGE_MISSING`` — recorded, but no longer in ``.canon/images``.
"""

from __future__ import annotations

from collections.abc import Mapping

from canon.declare.project import ArtifactKind, ArtifactSpec, Project
from canon.graph.pipeline import overlaps
from canon.plan.change import Action, Change, Reason, Why
from canon.plan.observed import ImageObservation
from canon.stores.records import ProfileState

_PENDING = (Action.RUN, Action.RESTORE)


def _producers(project: Project, spec: ArtifactSpec) -> list[str]:
    return [
        name
        for name, stage in project.stages.items()
        if any(overlaps(path, out) for path in spec.add for out in stage.outs)
    ]


def plan_images(
    project: Project,
    state: ProfileState,
    observed: Mapping[str, ImageObservation],
    actions: Mapping[str, Action],
) -> list[Change]:
    """One Change per artifact (bases first), BUILD or NOOP."""
    specs = [s for s in project.artifacts.values() if s.kind is ArtifactKind.BASE]
    specs += [s for s in project.artifacts.values() if s.kind is ArtifactKind.MODEL]
    building: set[str] = set()
    changes: list[Change] = []
    for spec in specs:
        seen = observed.get(spec.name, ImageObservation())
        record = state.images.get(spec.name)
        reasons: list[Why] = [
            Why(Reason.UPSTREAM_CHANGED, stage)
            for stage in _producers(project, spec)
            if actions.get(stage) in _PENDING
        ]
        if spec.base is not None and spec.base in building:
            reasons.append(Why(Reason.UPSTREAM_CHANGED, spec.base))
        if not reasons:
            if record is None:
                reasons.append(Why(Reason.NEVER_BUILT))
            elif seen.key is None or seen.key != record.key:
                reasons.append(Why(Reason.INPUTS_CHANGED, seen.problem))
            elif not seen.stored:
                reasons.append(Why(Reason.IMAGE_MISSING))
        address = f"image.{spec.name}"
        if reasons:
            building.add(spec.name)
            changes.append(Change(address, Action.BUILD, tuple(reasons), seen.key))
        else:
            changes.append(Change(address, Action.NOOP, (), seen.key))
    return changes
