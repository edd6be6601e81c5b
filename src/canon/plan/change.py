"""A plan is data: changes with an action and the reasons behind it.

Modelled on Terraform's ``plans.Action`` and ``ResourceInstanceChangeActionReason``:
every change says *why*, with before/after values, so ``canon status`` can
print ``train: PARAM_CHANGED train.lr 0.1 -> 0.2`` and ``--json`` can carry the
same facts to a UI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    RUN = "run"  # execute the stage's command
    RESTORE = "restore"  # bring outputs back from the cache (inputs seen before)
    PIN = "pin"  # record a dataset's content in the lock and the cache
    UPDATE = "update"  # the declaration no longer matches the pin: `canon data update NAME`
    BUILD = "build"  # build an image (artifacts:) and record its digest
    DEPLOY = "deploy"  # roll a deployment out to the image canon.lock pins
    NOOP = "noop"


class Reason(StrEnum):
    NEVER_RUN = "NEVER_RUN"
    CMD_CHANGED = "CMD_CHANGED"
    ENV_CHANGED = "ENV_CHANGED"
    DEP_CHANGED = "DEP_CHANGED"
    DEP_ADDED = "DEP_ADDED"
    DEP_REMOVED = "DEP_REMOVED"
    DEP_MISSING = "DEP_MISSING"
    PARAM_CHANGED = "PARAM_CHANGED"
    PARAM_ADDED = "PARAM_ADDED"
    PARAM_REMOVED = "PARAM_REMOVED"
    OUTS_CHANGED = "OUTS_CHANGED"
    OUTPUT_MISSING = "OUTPUT_MISSING"
    OUTPUT_MODIFIED = "OUTPUT_MODIFIED"
    UPSTREAM_CHANGED = "UPSTREAM_CHANGED"
    RUN_CACHED = "RUN_CACHED"  # these exact inputs ran before; outputs come from the cache
    DATA_NEW = "DATA_NEW"
    DATA_CHANGED = "DATA_CHANGED"
    DATA_DRIFT = "DATA_DRIFT"  # the source differs from its pin (reported, never applied)
    SOURCE_MISSING = "SOURCE_MISSING"  # the source of a pinned dataset is gone
    SOURCE_UNREACHABLE = "SOURCE_UNREACHABLE"  # could not be compared with its pin
    SOURCE_CHANGED = "SOURCE_CHANGED"  # the declared source is not the pinned one
    QUERY_CHANGED = "QUERY_CHANGED"  # the declared query / database / as_of is not the pinned one
    SUBSET_CHANGED = "SUBSET_CHANGED"  # the declared sample / filter / seed changed
    FORCED = "FORCED"
    NEVER_BUILT = "NEVER_BUILT"  # an artifact with no image recorded
    INPUTS_CHANGED = "INPUTS_CHANGED"  # an image's key (everything that goes into it) changed
    IMAGE_MISSING = "IMAGE_MISSING"  # recorded, but not in .canon/images
    NEVER_DEPLOYED = "NEVER_DEPLOYED"  # a deployment with nothing running / rendered
    DIGEST_CHANGED = "DIGEST_CHANGED"  # the live image is not the one canon.lock pins
    DEPLOYMENT_DRIFT = "DEPLOYMENT_DRIFT"  # a process died, another version answers, an edit
    NOT_BUILT = "NOT_BUILT"  # canon.lock pins no image for the deployment's artifact yet


@dataclass(frozen=True)
class Why:
    reason: Reason
    subject: str | None = None  # the dep, param or upstream stage concerned
    before: Any = None
    after: Any = None

    def describe(self) -> str:
        if self.reason is Reason.DATA_DRIFT and isinstance(self.after, str):
            return f"DATA_DRIFT {self.subject}: {self.after}"
        if self.reason is Reason.DEPLOYMENT_DRIFT and isinstance(self.after, str):
            return f"DEPLOYMENT_DRIFT: {self.after}"
        text = self.reason.value
        if self.subject:
            text += f" {self.subject}"
        if self.before is not None or self.after is not None:
            text += f" {_short(self.before)} -> {_short(self.after)}"
        return text


def _short(value: Any) -> str:
    if value is None:
        return "(none)"
    text = str(value)
    if text.startswith("sha256:"):
        return text[7:19]
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Change:
    address: str  # "stage.train", "data.weather"
    action: Action
    reasons: tuple[Why, ...] = ()
    key: str | None = None  # the stage key the change will produce, when known now

    @property
    def kind(self) -> str:
        return self.address.partition(".")[0]

    @property
    def name(self) -> str:
        return self.address.partition(".")[2]

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.action.value,
            "key": self.key,
            "reasons": [
                {
                    "reason": w.reason.value,
                    "subject": w.subject,
                    "before": w.before,
                    "after": w.after,
                }
                for w in self.reasons
            ],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Change:
        return cls(
            address=str(raw["address"]),
            action=Action(raw["action"]),
            key=raw.get("key"),
            reasons=tuple(
                Why(Reason(w["reason"]), w.get("subject"), w.get("before"), w.get("after"))
                for w in raw.get("reasons", [])
            ),
        )


@dataclass(frozen=True)
class Plan:
    """What must change, in execution order, and what it was computed against."""

    changes: tuple[Change, ...]
    profile: str | None
    fingerprint: str  # digest of everything observed; a saved plan is stale if it differs
    commit: str | None = None
    targets: tuple[str, ...] = field(default_factory=tuple)

    @property
    def pending(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is not Action.NOOP)

    @property
    def reports(self) -> tuple[Change, ...]:
        """Unchanged items with something to say (data drift, a missing source)."""
        return tuple(c for c in self.changes if c.action is Action.NOOP and c.reasons)

    @property
    def drift(self) -> bool:
        return any(w.reason is Reason.DATA_DRIFT for c in self.reports for w in c.reasons)

    @property
    def up_to_date(self) -> bool:
        return not self.pending

    def get(self, address: str) -> Change | None:
        return next((c for c in self.changes if c.address == address), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "canon.plan/v1",
            "profile": self.profile,
            "fingerprint": self.fingerprint,
            "commit": self.commit,
            "targets": list(self.targets),
            "changes": [c.to_dict() for c in self.changes],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Plan:
        if raw.get("format") != "canon.plan/v1":
            raise ValueError(f"not a canon plan (format {raw.get('format')!r})")
        return cls(
            changes=tuple(Change.from_dict(c) for c in raw["changes"]),
            profile=raw.get("profile"),
            fingerprint=str(raw["fingerprint"]),
            commit=raw.get("commit"),
            targets=tuple(raw.get("targets", ())),
        )
