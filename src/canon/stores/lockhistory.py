"""Every ``canon.lock`` Git knows: all versions in all commits reachable from any ref.

``lock_versions(root)`` runs exactly two Git processes, whatever the history
size: ``git log --all --full-history --format=%H -- canon.lock`` (the commits
that changed the lock, on every branch, tag, ``refs/canon/*`` experiment ref
and the stash; ``--full-history`` so merges do not hide a side's versions),
then one ``git cat-file --batch`` that reads the lock at each of those commits
plus the staged one (``:canon.lock``). Each distinct blob is returned once.

An empty or failed read of Git must never make ``gc`` delete anything
(RELIABILITY.md, network faults): a Git failure is a ``StateError``; only a
directory that is not a Git repository at all yields no versions.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from canon.errors import StateError

LOCK_NAME = "canon.lock"


def _git(root: Path, *args: str, data: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=root, input=data, capture_output=True, check=False, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StateError(f"cannot run git: {exc}", hint="install git, or fix PATH") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[:300]
        raise StateError(
            f"git {args[0]} failed: {err}", hint="is the repository healthy? (git fsck)"
        )
    return proc.stdout


def in_git(root: Path) -> bool:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--is-inside-work-tree"],
            cwd=root,
            capture_output=True,
            check=False,
        )
    except OSError:
        return False
    return proc.returncode == 0 and proc.stdout.strip() == b"true"


def lock_versions(root: Path) -> list[bytes]:
    """The distinct contents of canon.lock across all of Git's history and index."""
    if not in_git(root):
        return []
    prefix = _git(root, "rev-parse", "--show-prefix").decode().strip()
    path = prefix + LOCK_NAME
    log = _git(root, "log", "--all", "--full-history", "--format=%H", "--", LOCK_NAME)
    commits = [c for c in log.decode().split() if c]
    requests = [f"{c}:{path}" for c in commits] + [f":{path}"]
    out = _git(root, "cat-file", "--batch", data=("\n".join(requests) + "\n").encode())
    return _parse_batch(out, len(requests))


def _parse_batch(out: bytes, expected: int) -> list[bytes]:
    seen: set[bytes] = set()
    blobs: list[bytes] = []
    pos = 0
    answered = 0
    while pos < len(out):
        nl = out.index(b"\n", pos)
        header = out[pos:nl].split(b" ")
        pos = nl + 1
        answered += 1
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            blob = out[pos : pos + size]
            pos += size + 1  # the content, then a newline
            if header[0] not in seen:
                seen.add(header[0])
                blobs.append(blob)
        elif header[-1] != b"missing" and not (len(header) >= 2 and header[1] == b"ambiguous"):
            raise StateError(f"unexpected answer from git cat-file: {out[:80]!r}")
    if answered != expected:
        raise StateError(f"git cat-file answered {answered} of {expected} requests")
    return blobs
