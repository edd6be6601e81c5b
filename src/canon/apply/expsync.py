"""``canon exp push`` / ``canon exp pull``: share experiments through Git and the data remote.

An experiment is a Git ref (``refs/canon/exps/NAME``) plus the objects its
``canon.lock`` names. Sharing moves both, in the order that never leaves a
teammate with a ref whose outputs are nowhere:

- **push**: the objects first — the roots each experiment's lock records under
  the profile it ran with, to the project's data remote (``-r`` or its default) —
  then the refs (``git push GIT_REMOTE refs/canon/exps/N:refs/canon/exps/N``);
- **pull**: the refs (``git fetch``), then their objects into the local cache
  (not the workspace: ``canon exp promote NAME`` then ``canon apply`` restores
  them without running anything).

A project with no data remote shares the refs alone (params, metrics, locks)
and says so. A ref that moved differently on both sides is refused, as Git
refuses a non-fast-forward push; ``--force`` overwrites.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from canon.apply.transfer import Transfer
from canon.errors import RemoteUnavailableError
from canon.events import Emit, Notice
from canon.stores.exprefs import (
    PREFIX,
    ExperimentError,
    ExperimentNotFoundError,
    ExperimentRefs,
    check_name,
    git,
)
from canon.stores.references import Root, lock_roots
from canon.urls import redact_text


@dataclass
class SyncResult:
    names: list[str] = field(default_factory=list)  # the experiments pushed / pulled
    objects: int = 0  # objects moved to / from the data remote
    size: int = 0
    remote: str | None = None  # the data remote, None when the project declares none


def push_experiments(
    root: Path,
    git_remote: str,
    names: Sequence[str],
    *,
    every: bool = False,
    remote: str | None = None,
    profile: str | None = None,
    force: bool = False,
    jobs: int | None = None,
    emit: Emit,
) -> SyncResult:
    refs = ExperimentRefs(root)
    chosen = _chosen(refs, names, every)
    _check_git_remote(root, git_remote)  # before any upload
    result = SyncResult(chosen)
    roots = _roots_of(refs, chosen)
    transfer = _transfer(root, remote, profile, jobs, emit)
    if transfer is None:
        emit(Notice("no data remote is declared: pushing the experiments' refs only"))
    elif roots:
        done = transfer.push(roots)
        result.objects, result.size = done.objects, done.size
        result.remote = transfer.remote.display
    plus = "+" if force else ""
    _git_remote(root, "push", git_remote, *(f"{plus}{PREFIX}{n}:{PREFIX}{n}" for n in chosen))
    return result


def pull_experiments(
    root: Path,
    git_remote: str,
    names: Sequence[str],
    *,
    every: bool = False,
    remote: str | None = None,
    profile: str | None = None,
    force: bool = False,
    jobs: int | None = None,
    emit: Emit,
) -> SyncResult:
    if not names and not every:
        raise ExperimentError(
            "which experiments? name them, or pass --all",
            hint=f"`git ls-remote {git_remote} '{PREFIX}*'` lists what the remote has",
        )
    plus = "+" if force else ""
    specs = (
        [f"{plus}{PREFIX}*:{PREFIX}*"]
        if every
        else [f"{plus}{PREFIX}{check_name(n)}:{PREFIX}{n}" for n in names]
    )
    refs = ExperimentRefs(root)
    _check_git_remote(root, git_remote)
    before = refs.heads()
    _git_remote(root, "fetch", git_remote, *specs)
    after = refs.heads()
    fetched = sorted(n for n, oid in after.items() if before.get(n) != oid)
    # every experiment asked for, not only the refs that moved: a pull whose object fetch
    # failed is finished by the next one (what the cache has is not downloaded again)
    wanted = _on_remote(root, git_remote) if every else sorted(set(names))
    result = SyncResult(fetched)
    roots = _roots_of(refs, wanted)
    transfer = _transfer(root, remote, profile, jobs, emit)
    if transfer is None:
        emit(Notice("no data remote is declared: the experiments' outputs were not fetched"))
    elif roots:
        done = transfer.fetch(roots)
        result.objects, result.size = done.objects, done.size
        result.remote = transfer.remote.display
    return result


def _chosen(refs: ExperimentRefs, names: Sequence[str], every: bool) -> list[str]:
    known = refs.names()
    if every:
        if not known:
            raise ExperimentNotFoundError("there are no experiments", hint="canon exp run …")
        return sorted(known)
    if not names:
        raise ExperimentError("which experiments? name them, or pass --all", hint="canon exp show")
    missing = [n for n in names if n not in known]
    if missing:
        raise ExperimentNotFoundError(
            f"no experiment {missing[0]!r}", hint="`canon exp show` lists them"
        )
    return sorted(set(names))


def _roots_of(refs: ExperimentRefs, names: Sequence[str]) -> list[Root]:
    """The roots each experiment's lock records under the profile it ran with, once.
    One ``for-each-ref`` + ``cat-file --batch`` for the summaries, one batch for the
    locks, however many experiments."""
    from canon.stores.lockfile import parse_lock

    wanted = set(names)
    ran = [e for e in refs.list() if e.name in wanted]
    locks = refs.objects([f"{e.commit}:canon.lock" for e in ran])
    seen: dict[str, Root] = {}
    for exp, raw in zip(ran, locks, strict=True):
        if raw is None:
            continue
        profile = exp.info.get("profile")
        state = parse_lock(raw, f"{PREFIX}{exp.name}:canon.lock").state(
            profile if isinstance(profile, str) else None
        )
        for r in lock_roots(state):
            seen.setdefault(str(r.digest), r)
    return list(seen.values())


def _transfer(
    root: Path, remote: str | None, profile: str | None, jobs: int | None, emit: Emit
) -> Transfer | None:
    """The data remote's transfer (``-r``, else the project's choice); None when the
    project declares no remote at all."""
    from canon.apply.sync import transfer_for
    from canon.declare.memo import load_project_memoised

    project = load_project_memoised(root, profile=profile)
    if remote is None and not project.remotes:
        return None
    return transfer_for(root, project, remote, jobs, emit)


def _on_remote(root: Path, git_remote: str) -> list[str]:
    out = git(root, "ls-remote", "--refs", git_remote, f"{PREFIX}*")
    refs = (line.split("\t", 1)[1] for line in out.decode().splitlines() if "\t" in line)
    return sorted(r[len(PREFIX) :] for r in refs if r.startswith(PREFIX))


def _check_git_remote(root: Path, git_remote: str) -> None:
    """A configured remote's name, a URL, or a path that exists: as ``git push`` takes."""
    if "://" in git_remote or (root / git_remote).exists() or Path(git_remote).is_absolute():
        return
    if ":" in git_remote.split("/", 1)[0]:  # scp-like host:path
        return
    known = git(root, "remote").decode().split()
    if git_remote not in known:
        raise ExperimentError(
            f"no Git remote named {git_remote!r} (configured: {', '.join(known) or 'none'})",
            hint="`git remote add NAME URL`, or pass the URL itself",
        )


def _git_remote(root: Path, verb: str, git_remote: str, *specs: str) -> None:
    """``git push|fetch GIT_REMOTE SPECS``, its failures as canon errors."""
    done = subprocess.run(
        ["git", verb, git_remote, *specs], cwd=root, capture_output=True, check=False
    )
    if done.returncode == 0:
        return
    text = done.stderr.decode(errors="replace").strip()
    tail = redact_text("\n".join(text.splitlines()[-4:])[:600])
    # (not --quiet: a refused fetch is silent with it, and would read as "unreachable")
    if "rejected" in text or "non-fast-forward" in text or "would clobber" in text:
        raise ExperimentError(
            f"git {verb} {git_remote}: an experiment of the same name differs there:\n{tail}",
            hint="rename yours (canon exp run --name), or pass --force to overwrite",
        )
    if "couldn't find remote ref" in text:
        raise ExperimentNotFoundError(
            f"git {verb} {git_remote}: no such experiment there:\n{tail}",
            hint=f"`git ls-remote {git_remote} '{PREFIX}*'` lists what it has",
        )
    raise RemoteUnavailableError(
        f"git {verb} {git_remote} failed:\n{tail}",
        hint="check the Git remote's name (`git remote -v`), its URL and your access to it",
    )
