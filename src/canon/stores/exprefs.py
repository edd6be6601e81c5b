"""Experiments as Git state: one commit per experiment on ``refs/canon/exps/<name>``.

An experiment commit's parent is the commit it started from (the base); its
tree is the base's tree with the experiment's ``params.yaml``, ``canon.lock``
and metrics files; its message is ``canon exp NAME`` followed by a JSON
summary (params, overrides, metrics, profile, dataset pins, outcome) so that
listing *every* experiment costs one ``git for-each-ref`` and one
``git cat-file --batch``, whatever their number (never a process per ref).

Commits are made with an index file of our own (the experiment worktree's,
or ``GIT_INDEX_FILE`` in a temp dir): the user's index and working tree are
never touched. Refs move only
by compare-and-swap (``git update-ref REF NEW OLD``; all zeros = must not
exist), so two writers never lose an update and a killed run leaves either
no ref or a whole commit. The refs are ordinary Git refs: push and fetch them
with ``git push origin 'refs/canon/exps/*:refs/canon/exps/*'``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from canon.errors import CanonError, StateError

PREFIX = "refs/canon/exps/"
ZERO = "0" * 40
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$")


class ExperimentError(CanonError):
    code = "exp.error"


class ExperimentNotFoundError(ExperimentError):
    code = "exp.not_found"


@dataclass(frozen=True)
class Experiment:
    """One experiment as recorded in Git."""

    name: str
    commit: str
    base: str
    params: Mapping[str, Any] = field(default_factory=dict)  # flattened: "train.C" -> 0.5
    overrides: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)  # flattened "file:key" -> value
    info: Mapping[str, Any] = field(default_factory=dict)  # profile, datasets, status, created

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "commit": self.commit,
            "base": self.base,
            "params": dict(self.params),
            "overrides": dict(self.overrides),
            "metrics": dict(self.metrics),
            **dict(self.info),
        }


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name or name.endswith((".lock", ".")):
        raise ExperimentError(
            f"{name!r} is not an experiment name",
            hint="use letters, digits, '.', '_' and '-' (at most 100), e.g. lr-0.05",
        )
    return name


def git(
    root: Path, *args: str, data: bytes | None = None, env: Mapping[str, str] | None = None
) -> bytes:
    return git_wait(git_start(root, *args, data=data is not None, env=env), data)


def git_start(
    root: Path, *args: str, data: bool = False, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``git ARGS`` in ``root``; ``git_wait`` collects it. The caller may work
    meanwhile (git takes the other core: an experiment imports while its worktree is
    checked out)."""
    try:
        return subprocess.Popen(
            ["git", *args],
            cwd=root,
            stdin=subprocess.PIPE if data else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **env} if env else None,
        )
    except OSError as exc:
        raise StateError(f"cannot run git: {exc}", hint="install git, or fix PATH") from exc


def git_wait(proc: subprocess.Popen[bytes], data: bytes | None = None) -> bytes:
    """The output of a ``git_start``ed git, or StateError with git's message."""
    try:
        out, err = proc.communicate(data, timeout=600)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait()
        raise StateError(f"cannot run git: {exc}", hint="is the repository healthy?") from exc
    if proc.returncode != 0:
        args = proc.args if isinstance(proc.args, list) else ["git", "?"]
        text = err.decode(errors="replace").strip()[:400]
        raise StateError(f"git {args[1]} failed: {text}", hint="is the repository healthy?")
    return out


def resolve_commit(root: Path, rev: str) -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        cwd=root,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ExperimentNotFoundError(
            f"{rev!r} is not a commit or an experiment",
            hint="see `canon exp show` for experiments, `git log` for commits",
        )
    return proc.stdout.decode().strip()


STATUS = ("status", "--porcelain", "--untracked-files=no", "-z")  # what snapshot_workspace reads


def snapshot_workspace(
    root: Path, head: str, status: bytes | None = None
) -> tuple[str, list[str]] | None:
    """A commit of ``head`` plus the workspace's uncommitted changes to tracked files
    (staged or not, and files staged as new), or None when there are none.

    The commit is a plain object, referenced by no branch: the user's branch,
    index and working tree are never touched (a private copy of the index is
    updated). It stays reachable through the experiment that uses it as its base.
    ``status``: the output of ``git STATUS`` when the caller ran it already.
    """
    changed = (git(root, *STATUS) if status is None else status).decode()
    paths = [entry[3:] for entry in changed.split("\0") if len(entry) > 3 and entry[2] == " "]
    if not paths:
        return None
    index = Path(git(root, "rev-parse", "--git-path", "index").decode().strip())
    if not index.is_absolute():
        index = root / index
    with tempfile.TemporaryDirectory(prefix="canon-exp-snap-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        if index.is_file():
            shutil.copyfile(index, env["GIT_INDEX_FILE"])
        else:
            git(root, "read-tree", head, env=env)
        git(root, "add", "-u", "--", ".", env=env)
        tree = git(root, "write-tree", env=env).decode().strip()
    if tree == git(root, "rev-parse", f"{head}^{{tree}}").decode().strip():
        return None  # only mode or stat noise: nothing to snapshot
    message = f"canon exp: uncommitted workspace changes on top of {head[:12]}\n"
    commit = (
        git(root, "commit-tree", tree, "-p", head, data=message.encode(), env=_commit_env())
        .decode()
        .strip()
    )
    return commit, sorted(paths)


def _commit_env() -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", "canon"),
        "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", "canon@localhost"),
        "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", "canon"),
        "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", "canon@localhost"),
    }


class ExperimentRefs:
    """The experiments of the repository at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def commit_of(self, name: str) -> str:
        """The commit of experiment ``name`` (or a commit-ish, for diff)."""
        if _NAME.match(name):
            proc = subprocess.run(
                ["git", "rev-parse", "--verify", "--quiet", PREFIX + name],
                cwd=self.root,
                capture_output=True,
                check=False,
            )
            if proc.returncode == 0:
                return proc.stdout.decode().strip()
        return resolve_commit(self.root, name)

    def record(
        self,
        name: str,
        base: str,
        files: Mapping[str, Path],
        summary: Mapping[str, Any],
        *,
        replace: bool = False,
        worktree: Path | None = None,
        index: Path | None = None,
    ) -> str:
        """Commit ``files`` (repo path -> file on disk) on top of ``base`` and point
        ``refs/canon/exps/<name>`` at it. Refuses to overwrite an existing
        experiment unless ``replace``; the ref moves by compare-and-swap.

        ``worktree``: a worktree whose HEAD is ``base`` and that holds every file
        at its repo path: the files are added from there, to ``index`` when given
        (a private index ``read_tree_start`` filled from ``base`` ahead of time), else
        to the worktree's own index. A private one is faster: the worktree's, written
        in the second its files were checked out, makes git re-hash every file
        ("racily clean") each time it is written."""
        check_name(name)
        ref = PREFIX + name
        old = self._current(ref) if replace else None
        paths = sorted(files)
        inside = worktree is not None and all(Path(files[p]) == Path(worktree) / p for p in paths)
        if worktree is not None and inside:
            env = {"GIT_INDEX_FILE": str(index)} if index is not None else None
            if paths:  # plumbing: no ignore rules (metrics files are often .gitignored, and
                # belong in the record), filters applied as by `git add`; 2.5x faster
                git(worktree, "update-index", "--add", "--", *paths, env=env)
            tree = git(worktree, "write-tree", env=env).decode().strip()
        else:
            tree = self._tree(base, files, paths)
        message = f"canon exp {name}\n\n{json.dumps(dict(summary), sort_keys=True, default=str)}\n"
        commit = (
            git(
                self.root, "commit-tree", tree, "-p", base, data=message.encode(), env=_commit_env()
            )
            .decode()
            .strip()
        )
        self._swap(ref, commit, old or ZERO, name)
        return commit

    def read_tree_start(self, base: str, index: Path) -> subprocess.Popen[bytes]:
        """Start filling the private index ``index`` from ``base`` (``record(index=)``);
        ``git_wait`` it."""
        return git_start(self.root, "read-tree", base, env={"GIT_INDEX_FILE": str(index)})

    def _tree(self, base: str, files: Mapping[str, Path], paths: list[str]) -> str:
        """The tree of ``base`` with ``files`` written in, through a private index."""
        with tempfile.TemporaryDirectory(prefix="canon-exp-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            git(self.root, "read-tree", base, env=env)
            if paths:
                listing = "\n".join(str(files[p]) for p in paths) + "\n"
                blobs = git(self.root, "hash-object", "-w", "--stdin-paths", data=listing.encode())
                oids = blobs.decode().split()
                info = "".join(f"100644 {oid}\t{p}\n" for oid, p in zip(oids, paths, strict=True))
                git(self.root, "update-index", "--index-info", data=info.encode(), env=env)
            return git(self.root, "write-tree", env=env).decode().strip()

    def _current(self, ref: str) -> str | None:
        proc = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", ref],
            cwd=self.root,
            capture_output=True,
            check=False,
        )
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def _swap(self, ref: str, new: str, old: str, name: str) -> None:
        proc = subprocess.run(
            ["git", "update-ref", "-m", f"canon exp {name}", ref, new, old],
            cwd=self.root,
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0 and old == ZERO:
            raise ExperimentError(
                f"experiment {name!r} exists already",
                hint="pick another --name, or `canon exp remove` it first",
            )
        if proc.returncode != 0:
            raise ExperimentError(
                f"experiment {name!r} was written by someone else meanwhile",
                hint="pick another --name; nothing was overwritten",
            )

    def remove(self, names: Sequence[str]) -> list[str]:
        removed = []
        for name in names:
            ref = PREFIX + check_name(name)
            old = self._current(ref)
            if old is None:
                raise ExperimentNotFoundError(
                    f"no experiment {name!r}", hint="see `canon exp show`"
                )
            git(self.root, "update-ref", "-d", ref, old)
            removed.append(name)
        return removed

    def heads(self) -> dict[str, str]:
        """Every experiment's name -> its commit, with one ``for-each-ref``."""
        out = git(self.root, "for-each-ref", "--format=%(objectname) %(refname)", PREFIX)
        pairs = (line.split(" ", 1) for line in out.decode().splitlines() if line)
        return {ref[len(PREFIX) :]: oid for oid, ref in pairs}

    def names(self) -> list[str]:
        return list(self.heads())

    def objects(self, specs: Sequence[str]) -> list[bytes | None]:
        """``git cat-file --batch`` of ``specs`` (an object, or ``REV:PATH``): each one's
        bytes, None where git has none; one git process however many."""
        if not specs:
            return []
        out = git(self.root, "cat-file", "--batch", data=("\n".join(specs) + "\n").encode())
        found: list[bytes | None] = []
        pos = 0
        for _ in specs:
            nl = out.index(b"\n", pos)
            header = out[pos:nl].split(b" ")
            pos = nl + 1
            if len(header) != 3:  # "<spec> missing"
                found.append(None)
                continue
            size = int(header[2])
            found.append(out[pos : pos + size])
            pos += size + 1
        return found

    def list(self) -> list[Experiment]:
        """Every experiment: one ``for-each-ref`` and one ``cat-file --batch``."""
        heads = self.heads()
        bodies = self.objects(list(heads.values()))
        return [
            parse_commit(name, oid, body)
            for (name, oid), body in zip(heads.items(), bodies, strict=True)
            if body is not None
        ]

    def get(self, name: str) -> Experiment:
        commit = self.commit_of(name)
        body = git(self.root, "cat-file", "commit", commit)
        return parse_commit(name, commit, body)

    def show_file(self, commit: str, path: str) -> bytes | None:
        proc = subprocess.run(
            ["git", "cat-file", "blob", f"{commit}:{path}"],
            cwd=self.root,
            capture_output=True,
            check=False,
        )
        return proc.stdout if proc.returncode == 0 else None


def parse_commit(name: str, oid: str, body: bytes) -> Experiment:
    """An experiment from a raw commit object (headers, blank line, message)."""
    head, _, message = body.partition(b"\n\n")
    base = ""
    for line in head.split(b"\n"):
        if line.startswith(b"parent "):
            base = line[7:].decode()
            break
    summary: dict[str, Any] = {}
    for line in message.split(b"\n"):
        if line.startswith(b"{"):
            try:
                loaded = json.loads(line)
            except ValueError:
                continue
            if isinstance(loaded, dict):
                summary = loaded
            break
    params = summary.pop("params", {})
    overrides = summary.pop("overrides", {})
    metrics = summary.pop("metrics", {})
    return Experiment(
        name=name,
        commit=oid,
        base=base,
        params=params if isinstance(params, dict) else {},
        overrides=overrides if isinstance(overrides, dict) else {},
        metrics=metrics if isinstance(metrics, dict) else {},
        info=summary,
    )
