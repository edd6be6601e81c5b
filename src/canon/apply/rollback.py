"""``canon rollback ENV [--to COMMIT]``, the GitOps way: a commit, then a rollout.

The deployed image is what canon.lock pins, so rolling back is pinning an earlier digest:
the image record of the deployment's artifact is taken from canon.lock at ``--to COMMIT``
(default: the latest commit whose pin differs from the current one), written into
canon.lock and committed (only that file) with a message that says what moved where; then
the deployment is rolled out to it (zero-downtime, recorded in the ledger). Undoing the
rollback is ``git revert`` of that commit.

The next ``canon apply`` rebuilds the model if the code or data at HEAD give another
image: revert those too (or roll back with ``git revert``) to stay on the old version.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from canon.apply.deployments import roll_out, select
from canon.declare.memo import load_project_memoised
from canon.errors import DeployError
from canon.events import Emit, Notice
from canon.executors.deploy.target import Rollout
from canon.stores.lockfile import LOCK_NAME, parse_lock, read_lock, write_lock
from canon.stores.records import ImageRecord


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise DeployError(
            f"git {args[0]} failed: {done.stderr.strip()[:300]}",
            hint="is this a Git repository with canon.lock committed?",
        )
    return done.stdout


def _pinned_at(root: Path, commit: str, profile: str | None, artifact: str) -> ImageRecord | None:
    try:
        data = subprocess.run(
            ["git", "show", f"{commit}:{LOCK_NAME}"], cwd=root, capture_output=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(f"cannot run git: {exc}") from exc
    if data.returncode != 0:
        return None
    return parse_lock(data.stdout, f"{commit[:12]}:{LOCK_NAME}").state(profile).images.get(artifact)


def rollback(
    root: Path, *, profile: str | None, environment: str, to: str | None, emit: Emit
) -> Rollout:
    project = load_project_memoised(root, profile=profile)
    [spec] = select(project, [environment])
    pin_profile = spec.profile or project.profile
    lock = read_lock(root)
    state = lock.state(pin_profile)
    current = state.images.get(spec.artifact)
    if _git(root, "status", "--porcelain", "--", LOCK_NAME).strip():
        raise DeployError(
            "canon.lock has uncommitted changes",
            hint="commit them first: a rollback is a commit of canon.lock alone",
        )
    found: tuple[str, ImageRecord] | None = None
    if to is not None:
        commit = _git(root, "rev-parse", "--verify", f"{to}^{{commit}}").strip()
        record = _pinned_at(root, commit, pin_profile, spec.artifact)
        if record is None:
            raise DeployError(
                f"canon.lock at {to} pins no image {spec.artifact} for profile {pin_profile}"
            )
        found = (commit, record)
    else:
        for commit in _git(root, "log", "--format=%H", "HEAD", "--", LOCK_NAME).split():
            record = _pinned_at(root, commit, pin_profile, spec.artifact)
            if record is not None and (current is None or record.digest != current.digest):
                found = (commit, record)
                break
    if found is None:
        raise DeployError(
            f"no earlier image of {spec.artifact} in the history of canon.lock",
            hint="name one with --to COMMIT",
        )
    commit, record = found
    if current is not None and record.digest == current.digest:
        emit(Notice(f"{environment}: canon.lock already pins {record.digest[:19]}…"))
    else:
        write_lock(root, lock.with_state(pin_profile, state.with_image(spec.artifact, record)))
        before = current.digest[:19] if current else "(none)"
        message = (
            f"canon rollback {environment}: {spec.artifact} {before}… -> "
            f"{record.digest[:19]}… (as pinned at {commit[:12]})"
        )
        _git(root, "commit", "-q", "-m", message, "--", LOCK_NAME)
        emit(Notice(message))
    [result] = roll_out(root, profile=profile, names=[environment], emit=emit)
    return result
