"""``canon reproduce REV``: re-run a past commit's stages and check them against its lock.

REV (a commit, branch, tag or experiment name) is checked out into a
temporary worktree that shares the object cache (so its pinned data and
inputs restore from there) but *not* the run cache: every stage runs again
(``force``), its key computed from REV's own code, params and pins. Then each
stage's new outputs are compared with what REV's ``canon.lock`` recorded:

- ``identical``: every output's digest is the recorded one (bit for bit);
- ``within-tolerance``: some digest differs, but the stage is declared
  ``deterministic: false`` and every metric is within ``rtol``/``atol`` of
  the recorded value (metrics files are read from the cache by digest);
- ``differs``: anything else, with the files (and metrics) that differ.

The stages run in REV's declared environment, rebuilt (``--env rebuild``, the
default): a venv of the declared Python with REV's requirements lock installed
(``executors/venv.py``; kept under ``.canon/envs/`` by the lock's digest, so the
next reproduce of the same lock reuses it). ``--env current`` runs them in the
environment canon runs in; so does a REV that pins no requirements lock (there
is nothing to rebuild). The report says which.

Pinned data missing from the cache (a fresh clone, a pruned cache) is fetched from
the project's default remote first, when it declares one — the pin, verified, not
whatever the source holds today; without a remote, a pin's source is read again and
used only if it still gives exactly the pinned digest.

With ``images=True`` (``--images``), the images REV's lock records are then
rebuilt in a scratch layout — a base from its commit, a model from the
*reproduced* outputs on the base just rebuilt — and their digests compared
with the recorded ones (``apply/images.compare_images``); a differing one names
its differing layers (canon's runtime layer differs when canon itself changed
since REV was built).

The report is recorded in the ledger as an apply of REV whose argv is
``canon reproduce REV`` and whose stages carry the verdict.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canon.apply.environment import EnvironmentUsed, environment_for
from canon.apply.experiments import (
    failures,
    flatten,
    lock_committed_here,
    provenance_of,
    stages_only,
    worktree,
)
from canon.apply.images import ImageComparison
from canon.declare.project import Project
from canon.errors import CanonError, StageFailedError
from canon.events import Emit, Notice
from canon.stores.exprefs import ExperimentError, ExperimentRefs
from canon.stores.records import Content, ProfileState, StageRecord


@dataclass(frozen=True)
class StageVerdict:
    stage: str
    verdict: str  # identical | within-tolerance | differs | not-run
    files: tuple[str, ...] = ()  # outputs whose digest differs
    metrics: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)  # beyond tolerance
    deterministic: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "verdict": self.verdict,
            "files": list(self.files),
            "metrics": {k: list(v) for k, v in self.metrics.items()},
            "deterministic": self.deterministic,
        }


@dataclass(frozen=True)
class Reproduction:
    rev: str
    commit: str
    profile: str
    stages: tuple[StageVerdict, ...]
    environment: EnvironmentUsed | None = None
    images: tuple[ImageComparison, ...] = ()  # with --images
    # what REV's lock says it came from: dataset pins (subsets' parents), images
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        stages = all(s.verdict in ("identical", "within-tolerance") for s in self.stages)
        return stages and all(i.same for i in self.images)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rev": self.rev,
            "commit": self.commit,
            "profile": self.profile,
            "ok": self.ok,
            "stages": [s.to_dict() for s in self.stages],
            "environment": self.environment.to_dict() if self.environment else None,
            "provenance": dict(self.provenance),
            "images": [
                {
                    "name": i.name,
                    "verdict": i.verdict,
                    "recorded": str(i.recorded),
                    "rebuilt": str(i.rebuilt),
                    "layers": list(i.layers),
                }
                for i in self.images
            ],
        }


def _metrics(store: Any, content: Content | None) -> dict[str, Any]:
    if content is None or content.is_dir:
        return {}
    with contextlib.suppress(CanonError, OSError, ValueError):
        return flatten(json.loads(store.read_verified(content.digest)))
    return {}


def _close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)):
        return bool(a == b)
    if not isinstance(b, (int, float)):
        return False
    return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=atol)


def compare_stage(
    name: str,
    recorded: StageRecord,
    now: StageRecord | None,
    metric_paths: tuple[str, ...],
    deterministic: bool,
    store: Any,
    *,
    rtol: float,
    atol: float,
) -> StageVerdict:
    if now is None:
        return StageVerdict(name, "not-run", deterministic=deterministic)
    files = tuple(
        sorted(
            p
            for p in {*recorded.outs, *now.outs}
            if (recorded.outs.get(p) or _NONE).digest != (now.outs.get(p) or _NONE).digest
        )
    )
    if not files:
        return StageVerdict(name, "identical", deterministic=deterministic)
    beyond: dict[str, tuple[Any, Any]] = {}
    for path in metric_paths:
        old = _metrics(store, recorded.outs.get(path))
        new = _metrics(store, now.outs.get(path))
        for key in sorted({*old, *new}):
            if not _close(old.get(key), new.get(key), rtol, atol):
                beyond[f"{path}:{key}"] = (old.get(key), new.get(key))
    if not deterministic and not beyond:
        return StageVerdict(name, "within-tolerance", files, {}, deterministic)
    return StageVerdict(name, "differs", files, beyond, deterministic)


_NONE = Content(digest="", size=0, nfiles=0, is_dir=False)  # type: ignore[arg-type]


def reproduce(
    root: Path,
    rev: str,
    *,
    profile: str | None,
    emit: Emit,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    jobs: int = 1,
    env: str = "rebuild",
    images: bool = False,
) -> Reproduction:
    from canon.apply.applier import ApplyOptions
    from canon.apply.session import load, run_apply
    from canon.stores.ledger import Ledger
    from canon.stores.lockfile import parse_lock, read_lock
    from canon.stores.objects import ObjectStore

    refs = ExperimentRefs(root)
    commit = refs.commit_of(rev)
    raw = refs.show_file(commit, "canon.lock")
    if raw is None:
        raise ExperimentError(
            f"{rev} ({commit[:12]}) has no canon.lock: nothing was recorded to reproduce",
            hint="pick a commit whose canon.lock was committed (`git log -- canon.lock`)",
        )
    with worktree(root, commit, "reproduce", share=("cache",)) as tree:
        project, _ = load(tree, profile)
        recorded = parse_lock(raw).state(project.profile)
        if not recorded.stages:
            raise ExperimentError(
                f"{rev}'s canon.lock records no stage under profile {project.profile!r}",
                hint="pass the profile it was applied with: canon --profile NAME reproduce",
            )
        _fetch_missing_pins(tree, project, recorded, profile, emit)
        used, stage_env = environment_for(root, tree, project.environment, rev, env, emit, commit)
        result = run_apply(
            tree,
            profile=profile,
            targets=stages_only(project),  # the stages: no image build, no rollout
            options=ApplyOptions(jobs=jobs, force=True, rerun=True, stage_env=stage_env),
            emit=lock_committed_here(emit),  # the throwaway worktree's lock: no advice
            argv=["canon", "reproduce", rev],
            worktree_of=commit,  # the report goes to the main ledger (_record)
        )
        if not result.ok:
            failed = failures(root, tree, f"reproduce-{commit[:12]}", result.outcomes)
            raise StageFailedError(
                f"{rev}: a stage failed when run again in {used.description}: {failed[:300]}",
                hint=used.failure_hint(),
            )
        now = read_lock(tree).state(project.profile)
        store = ObjectStore(root / ".canon" / "cache")
        verdicts = tuple(
            compare_stage(
                name,
                rec,
                now.stages.get(name),
                project.stages[name].metrics if name in project.stages else (),
                project.stages[name].deterministic if name in project.stages else True,
                store,
                rtol=rtol,
                atol=atol,
            )
            for name, rec in sorted(recorded.stages.items())
        )
        rebuilt = _rebuild_images(root, tree, rev, profile, recorded, emit) if images else ()
    report = Reproduction(
        rev, commit, project.profile or "", verdicts, used, rebuilt, provenance_of(recorded)
    )
    _record(root, report, now.stages, Ledger)
    return report


def _rebuild_images(
    root: Path, tree: Path, rev: str, profile: str | None, recorded: ProfileState, emit: Emit
) -> tuple[ImageComparison, ...]:
    """REV's recorded images rebuilt from its commit and the reproduced outputs."""
    from canon.apply.images import compare_images, layout_of

    if not recorded.images:
        emit(Notice(f"{rev}'s canon.lock records no image: there is none to rebuild"))
        return ()
    names = tuple(sorted(recorded.images))
    compared = compare_images(tree, profile=profile, names=names, emit=emit, layout=layout_of(root))
    return tuple(compared)


def _fetch_missing_pins(
    tree: Path, project: Project, recorded: ProfileState, profile: str | None, emit: Emit
) -> None:
    """Fetch REV's pinned datasets the shared cache lacks from the default remote."""
    from canon.apply.sync import run_fetch
    from canon.stores.objects import ObjectStore

    store = ObjectStore(tree / ".canon" / "cache")
    missing = sorted(n for n, pin in recorded.data.items() if not store.has(pin.content.digest))
    if not missing or project.remote is None:
        return
    targets = [f"data.{n}" for n in missing]
    emit(Notice(f"fetching the pins of {', '.join(targets)} from remote {project.remote}"))
    run_fetch(tree, profile=profile, targets=targets, emit=emit)


def _record(
    root: Path, report: Reproduction, now: Mapping[str, StageRecord], ledger_cls: Any
) -> None:
    """One apply row for the reproduction; a row per stage (its verdict), for the
    environment, for each dataset pin it ran on and for each image rebuilt."""
    (root / ".canon").mkdir(exist_ok=True)
    ledger = ledger_cls(root / ".canon" / "ledger.db")
    try:
        apply_id = ledger.begin_apply(
            report.commit, report.profile, ["canon", "reproduce", report.rev]
        )

        def row(
            stage: str,
            status: str,
            key: str | None,
            outputs: Mapping[str, str],
            reason: str | None = None,
        ) -> None:
            ledger.record_stage(
                apply_id,
                stage=stage,
                action="reproduce",
                status=status,
                key=key,
                outputs=outputs,
                duration=0.0,
                exit_code=None,
                reason=reason,
            )

        for v in report.stages:
            record = now.get(v.stage)
            outs = {p: str(c.digest) for p, c in (record.outs.items() if record else ())}
            row(v.stage, v.verdict, str(record.key) if record else None, outs)
        used = report.environment
        if used is not None:
            status = "rebuilt" if used.rebuilt else "current"
            row("environment", status, used.requirements, {"python": used.python}, used.description)
        subsets = report.provenance.get("subsets") or {}
        for name, digest in sorted((report.provenance.get("datasets") or {}).items()):
            parent = subsets.get(name)
            outputs = {"digest": digest, **({"subset_of": parent["of"]} if parent else {})}
            why = f"subset of {parent['of']} {parent['digest']}" if parent else None
            row(f"data.{name}", "input", digest, outputs, why)
        for image in report.images:
            outputs = {"recorded": str(image.recorded), "rebuilt": str(image.rebuilt)}
            row(
                f"image.{image.name}",
                image.verdict,
                str(image.rebuilt),
                outputs,
                "; ".join(image.layers) or None,
            )
        ledger.finish_apply(apply_id, "reproduced" if report.ok else "differs")
    finally:
        ledger.close()
