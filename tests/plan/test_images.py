"""plan_images: which artifacts BUILD after the stages, and why (table-driven, pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from canon.declare.project import ArtifactKind, ArtifactSpec, EnvironmentSpec, Project, StageSpec
from canon.digest import Digest
from canon.plan.change import Action
from canon.plan.images import plan_images
from canon.plan.observed import ImageObservation
from canon.stores.records import ImageRecord, ProfileState

K1, K2 = Digest("sha256:" + "1" * 64), Digest("sha256:" + "2" * 64)
D = Digest("sha256:" + "d" * 64)


def project() -> Project:
    train = StageSpec("train", ("python",), (), (), (), (), ("build/model.json",), ())
    return Project(
        root=Path("/p"), name="p", profile=None, profile_values={},
        environment=EnvironmentSpec(None, None), datasets={}, stages={"train": train},
        params_file="params.yaml",
        artifacts={
            "base": ArtifactSpec("base", ArtifactKind.BASE),
            "model": ArtifactSpec("model", ArtifactKind.MODEL, base="base",
                                  add=("build/model.json",)),
        },
    )


def rec(key: Digest) -> ImageRecord:
    return ImageRecord(D, key, "c" * 40)


CASES = {
    "never built": (
        {}, {}, {},
        {"base": "build NEVER_BUILT", "model": "build UPSTREAM_CHANGED base"}),
    "up to date": (
        {"base": rec(K1), "model": rec(K2)},
        {"base": ImageObservation(K1, True), "model": ImageObservation(K2, True)}, {},
        {"base": "noop", "model": "noop"}),
    "code changed": (
        {"base": rec(K1), "model": rec(K2)},
        {"base": ImageObservation(K2, True), "model": ImageObservation(K2, True)}, {},
        {"base": "build INPUTS_CHANGED", "model": "build UPSTREAM_CHANGED base"}),
    "training will run": (
        {"base": rec(K1), "model": rec(K2)},
        {"base": ImageObservation(K1, True), "model": ImageObservation(K2, True)},
        {"train": Action.RUN},
        {"base": "noop", "model": "build UPSTREAM_CHANGED train"}),
    "model file changed by hand": (
        {"base": rec(K1), "model": rec(K2)},
        {"base": ImageObservation(K1, True), "model": ImageObservation(K1, True)}, {},
        {"base": "noop", "model": "build INPUTS_CHANGED"}),
    "model file missing": (
        {"base": rec(K1), "model": rec(K2)},
        {"base": ImageObservation(K1, True),
         "model": ImageObservation(None, True, "build/model.json does not exist")}, {},
        {"base": "noop", "model": "build INPUTS_CHANGED build/model.json does not exist"}),
    "image deleted from the layout": (
        {"base": rec(K1), "model": rec(K2)},
        {"base": ImageObservation(K1, False), "model": ImageObservation(K2, True)}, {},
        {"base": "build IMAGE_MISSING", "model": "build UPSTREAM_CHANGED base"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_plan_images(case: str) -> None:
    images, observed, actions, expected = CASES[case]
    changes = plan_images(project(), ProfileState(images=images), observed, actions)
    got = {
        c.name: " ".join([c.action.value, *(w.describe() for w in c.reasons)]).replace(
            "build", "build", 1)
        for c in changes
    }
    assert got == expected
    assert [c.address for c in changes] == ["image.base", "image.model"]
