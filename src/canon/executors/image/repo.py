"""The repo at a commit, as layer entries: what Git tracks, minus secrets.

The repo layer holds the *whole* repo (lineage: the code that trained a model
is the code it is served with), read from the commit's tree and not from the
working tree, so that two clones of one commit give the same bytes whatever
else lies around them. All blobs are read through one ``git cat-file --batch``
(COMPONENTS.md: never a process per object).

What is left out, and said so:

- a deny-list of files that hold secrets (``.env``, ``*.pem``, ``*.key``,
  ``id_rsa*``, ``.netrc``, credentials files …) — RELIABILITY.md invariant 5:
  a secret never enters an image layer;
- the artifact's ``exclude:`` patterns;
- submodules (a commit id, not content) and symlinks that leave the repo.

``.git`` itself is never included (it is not in a tree; its ``config`` may hold
credentials); the commit id is in the image's labels and provenance instead.
"""

from __future__ import annotations

import fnmatch
import posixpath
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from canon.errors import ImageError
from canon.executors.image.tarball import Entry
from canon.observe.images import Commit

# Matched against each path's last segment (and, for patterns with "/", the whole path).
SECRET_PATTERNS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.env",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".pypirc",
    ".npmrc",
    ".dockercfg",
    ".docker/config.json",
    ".aws/credentials",
    "credentials",
    "credentials.json",
    "credentials.yaml",
    "credentials.yml",
    "*.kubeconfig",
    "kubeconfig",
    "secrets.yaml",
    "secrets.yml",
    "secrets.json",
    ".git/config",
)


@dataclass(frozen=True)
class RepoFiles:
    commit: Commit
    entries: tuple[Entry, ...]
    secrets: tuple[str, ...]  # left out: looked like secrets
    excluded: tuple[str, ...]  # left out: the artifact's exclude patterns
    skipped: tuple[str, ...]  # left out: submodules, symlinks leaving the repo


def _git(root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], input=stdin, capture_output=True, check=False
        )
    except FileNotFoundError as exc:
        raise ImageError("git is not installed", hint="install git") from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise ImageError(
            f"git {args[0]} failed: {message[-1] if message else done.returncode}",
            hint="images are built from a commit: run `git init` and commit your project",
        )
    return done.stdout


def tracked_changes(root: Path) -> list[str]:
    """Tracked files that differ from HEAD (they are *not* in an image built now)."""
    out = _git(root, "status", "--porcelain", "-z", "--untracked-files=no")
    return [item[3:] for item in out.decode(errors="replace").split("\0") if len(item) > 3]


def _matches(path: str, patterns: Sequence[str]) -> bool:
    name = posixpath.basename(path)
    for pattern in patterns:
        if "/" in pattern:
            if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, f"*/{pattern}"):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def _excluded(path: str, patterns: Sequence[str]) -> bool:
    """``exclude:`` patterns match the path or any of its parent directories."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(p, pat.rstrip("/")) for p in prefixes for pat in patterns)


def read_blobs(root: Path, objects: Sequence[str]) -> list[bytes]:
    """The contents of ``objects`` through one ``git cat-file --batch``."""
    if not objects:
        return []
    out = _git(root, "cat-file", "--batch", stdin=("\n".join(objects) + "\n").encode())
    blobs: list[bytes] = []
    pos = 0
    for obj in objects:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if len(header) != 3 or header[0].decode() != obj:
            raise ImageError(f"git cat-file: unexpected answer for {obj}")
        size = int(header[2])
        blobs.append(out[end + 1 : end + 1 + size])
        pos = end + 1 + size + 1
    return blobs


def repo_files(root: Path, commit: Commit, prefix: str, exclude: Sequence[str]) -> RepoFiles:
    """Every tracked file of ``commit`` as an entry under ``prefix``."""
    listing = _git(root, "ls-tree", "-r", "-z", "--full-tree", commit.id)
    rows: list[tuple[str, str, str]] = []
    secrets: list[str] = []
    excluded: list[str] = []
    skipped: list[str] = []
    for item in listing.split(b"\0"):
        if not item:
            continue
        meta, _, raw_path = item.partition(b"\t")
        mode, kind, obj = meta.decode().split()
        path = raw_path.decode("utf-8", "surrogateescape")
        if _matches(path, SECRET_PATTERNS):
            secrets.append(path)
        elif exclude and _excluded(path, exclude):
            excluded.append(path)
        elif kind != "blob":
            skipped.append(path)  # a submodule: a commit id, not content
        else:
            rows.append((mode, obj, path))
    contents = read_blobs(root, [obj for _, obj, _ in rows])
    entries: list[Entry] = []
    for (mode, _, path), data in zip(rows, contents, strict=True):
        target = f"{prefix}/{path}"
        if mode == "120000":
            link = data.decode("utf-8", "surrogateescape")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), link))
            if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
                skipped.append(path)
                continue
            entries.append(Entry(target, "symlink", target=link))
        else:
            entries.append(Entry.data(target, data, executable=mode == "100755"))
    return RepoFiles(commit, tuple(entries), tuple(secrets), tuple(excluded), tuple(skipped))


def file_at(root: Path, commit: str, path: str) -> bytes | None:
    """A file's bytes at ``commit``, or None when the commit does not have it."""
    try:
        return _git(root, "show", f"{commit}:{path}")
    except ImageError:
        return None


def origin_url(root: Path) -> str | None:
    """The ``origin`` remote when it is a URL others can reach (never a local path),
    with any credentials removed."""
    try:
        url = _git(root, "config", "--get", "remote.origin.url").decode().strip()
    except ImageError:
        return None
    if "://" in url:
        scheme, _, rest = url.partition("://")
        host_and_path = rest.rsplit("@", 1)[-1] if "@" in rest.split("/", 1)[0] else rest
        return f"{scheme}://{host_and_path}"
    if ":" in url and not url.startswith(("/", ".")) and "@" in url.split(":", 1)[0]:
        return url.split("@", 1)[1]  # git@github.com:org/repo -> github.com:org/repo
    return None
