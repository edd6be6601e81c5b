"""plan_deployments: table-driven, pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from canon.declare.project import DeploymentSpec, DeployTarget, EnvironmentSpec, Project
from canon.digest import Digest
from canon.plan.change import Action, Reason
from canon.plan.deployments import plan_deployments
from canon.plan.observed import DeploymentObservation as Seen
from canon.stores.records import ImageRecord, ProfileState

PINNED = "sha256:" + "11" * 32
OTHER = "sha256:" + "22" * 32
PROJECT = Project(
    root=Path("/nowhere"), name="p", profile="local", profile_values={},
    environment=EnvironmentSpec(None, None), datasets={}, stages={}, params_file="params.yaml",
    deployments={"local": DeploymentSpec("local", DeployTarget.LOCAL, "model")},
)
PIN = ProfileState(images={"model": ImageRecord(Digest(PINNED), Digest(PINNED), "c0ffee")})


@pytest.mark.parametrize(
    ("state", "seen", "building", "action", "reasons"),
    [
        (PIN, Seen(PINNED, True), set(), Action.NOOP, []),
        (PIN, None, set(), Action.DEPLOY, [Reason.NEVER_DEPLOYED]),
        (PIN, Seen(OTHER, True), set(), Action.DEPLOY, [Reason.DIGEST_CHANGED]),
        (PIN, Seen(PINNED, False, ("model server pid 7 died",)), set(), Action.DEPLOY,
         [Reason.DEPLOYMENT_DRIFT]),
        (PIN, Seen(PINNED, False), set(), Action.DEPLOY, [Reason.DEPLOYMENT_DRIFT]),
        (PIN, Seen(PINNED, True), {"model"}, Action.DEPLOY, [Reason.UPSTREAM_CHANGED]),
        (ProfileState(), None, set(), Action.NOOP, []),
        (ProfileState(), None, {"model"}, Action.DEPLOY, [Reason.UPSTREAM_CHANGED]),
        (PIN, Seen(None, False, ("the router is not running",)), set(), Action.DEPLOY,
         [Reason.DIGEST_CHANGED, Reason.DEPLOYMENT_DRIFT]),
    ],
)
def test_plan_deployments(
    state: ProfileState, seen: Seen | None, building: set[str], action: Action,
    reasons: list[Reason],
) -> None:
    observed = {"local": seen} if seen is not None else {}
    [change] = plan_deployments(PROJECT, state, observed, building)
    assert change.address == "deployment.local"
    assert change.action is action
    assert [w.reason for w in change.reasons] == reasons


def test_reasons_say_what_differs() -> None:
    [change] = plan_deployments(PROJECT, PIN, {"local": Seen(OTHER, True)}, set())
    assert change.reasons[0].describe() == "DIGEST_CHANGED model 222222222222 -> 111111111111"
    [drift] = plan_deployments(
        PROJECT, PIN, {"local": Seen(PINNED, False, ("model server pid 7 died",))}, set()
    )
    assert drift.reasons[0].describe() == "DEPLOYMENT_DRIFT: model server pid 7 died"
