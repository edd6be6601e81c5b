"""Safe extraction of layers and tarballs: every entry is checked before a byte is written.

RELIABILITY.md invariant 3. Tar extraction has escaped its directory in Argo
Workflows, containerd and CPython's own ``tarfile`` filter; the rules here are
*rejections*, never repairs, and they are all checked on the whole archive
first (``plan_extraction``), so a hostile archive leaves the target untouched:

- names: no absolute path, no ``..`` segment, no NUL, no backslash, no empty name;
- kinds: regular files, directories, symlinks and hardlinks only — devices,
  FIFOs and anything else are refused;
- symlinks: relative targets that stay inside the root (resolved lexically
  from the link's directory); absolute targets are refused;
- hardlinks: to a regular file *earlier in the same archive*;
- no entry may pass through a symlink of the archive (``a -> /etc``, then
  ``a/passwd``), and the target directory must be empty, so nothing on disk
  can redirect a write either; files are opened with ``O_NOFOLLOW | O_EXCL``;
- no duplicate names, and no two names that differ only in letter case (they
  would collide on macOS and Windows file systems);
- caps: entry count, total size and size of one member;
- OCI whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are refused unless the caller merges
  layers (``whiteouts=True``); then they are planned as ``whiteout`` / ``opaque`` entries
  naming what they hide in *lower* layers, never written, and applied by the caller
  (``executors/deploy/rootfs.py``) with the same care: no path through a symlink.

Extraction writes into a temp directory beside the target and renames it into
place, so a crash never leaves a half-extracted target.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from canon.errors import UnsafeArchiveError

MAX_ENTRIES = 200_000
MAX_TOTAL = 16 << 30
MAX_MEMBER = 8 << 30


@dataclass(frozen=True)
class Limits:
    entries: int = MAX_ENTRIES
    total: int = MAX_TOTAL
    member: int = MAX_MEMBER


@dataclass(frozen=True)
class Planned:
    name: str  # normalised relative path
    kind: str  # "file", "dir", "symlink", "hardlink"; "whiteout", "opaque" (merging only)
    mode: int
    size: int
    target: str = ""  # symlink target, or hardlink's normalised source


def _reject(name: str, why: str) -> UnsafeArchiveError:
    shown = name.encode("unicode_escape").decode()[:200]
    return UnsafeArchiveError(
        f"refusing archive: entry {shown!r} {why}",
        hint="nothing was extracted; the archive is hostile or broken — do not use it",
    )


WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def _normalise(raw: str, *, whiteouts: bool = False) -> str:
    if not raw or "\x00" in raw or "\\" in raw:
        raise _reject(raw, "has an empty name, a NUL or a backslash")
    if raw.startswith("/"):
        raise _reject(raw, "is an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _reject(raw, "contains '..'")
    if not parts:
        raise _reject(raw, "names the root itself")
    if parts[-1].startswith(WHITEOUT) and not whiteouts:
        raise _reject(raw, "is an OCI whiteout (layers are not merged here)")
    return "/".join(parts)


def _whiteout(m: tarfile.TarInfo, name: str) -> Planned:
    """A whiteout entry as what it hides: ``a/.wh.b`` hides ``a/b``; ``a/.wh..wh..opq``
    hides everything lower layers put in ``a``."""
    if not m.isreg() or m.size:
        raise _reject(m.name, "is a whiteout that is not an empty regular file")
    parent, _, leaf = name.rpartition("/")
    if leaf == OPAQUE:
        if not parent:
            raise _reject(m.name, "makes the root itself opaque")
        return Planned(parent, "opaque", 0, 0)
    hidden = leaf[len(WHITEOUT) :]
    if hidden in ("", ".", "..") or hidden.startswith(WHITEOUT):
        raise _reject(m.name, "is a whiteout of nothing nameable")
    return Planned(f"{parent}/{hidden}" if parent else hidden, "whiteout", 0, 0)


def plan_extraction(
    members: list[tarfile.TarInfo], limits: Limits = Limits(), *, whiteouts: bool = False
) -> list[Planned]:
    """Check every member; return what would be written, or raise ``UnsafeArchiveError``.
    ``whiteouts``: the archive is a layer to merge over lower ones (see the module doc)."""
    if len(members) > limits.entries:
        raise UnsafeArchiveError(
            f"refusing archive: {len(members)} entries (the cap is {limits.entries})"
        )
    planned: list[Planned] = []
    seen: dict[str, str] = {}
    folded: dict[str, str] = {}
    symlinks: set[str] = set()
    files: set[str] = set()
    total = 0
    hides: set[tuple[str, str]] = set()
    for m in members:
        name = _normalise(m.name, whiteouts=whiteouts)
        parents = [posixpath.join(*name.split("/")[:i]) for i in range(1, name.count("/") + 1)]
        for parent in parents:
            if parent in symlinks:
                raise _reject(m.name, f"passes through the symlink {parent!r}")
            if parent in files:
                raise _reject(m.name, f"is under the file {parent!r}")
        if name.rpartition("/")[2].startswith(WHITEOUT):
            hidden = _whiteout(m, name)
            if (hidden.kind, hidden.name) in hides:
                raise _reject(m.name, "appears twice")
            hides.add((hidden.kind, hidden.name))
            planned.append(hidden)
            continue
        if name in seen:
            if not (m.isdir() and seen[name] == "dir"):
                raise _reject(m.name, "appears twice")
            continue
        key = name.casefold()
        if key in folded and folded[key] != name:
            raise _reject(m.name, f"collides with {folded[key]!r} on a case-insensitive disk")
        if m.isreg():
            if m.size > limits.member:
                raise _reject(m.name, f"is {m.size} bytes (the cap is {limits.member})")
            total += m.size
            if total > limits.total:
                raise UnsafeArchiveError(
                    f"refusing archive: more than {limits.total} bytes of content"
                )
            kind, target = "file", ""
            files.add(name)
        elif m.isdir():
            kind, target = "dir", ""
        elif m.issym():
            link = m.linkname
            if not link or link.startswith("/") or "\x00" in link:
                raise _reject(m.name, f"is a symlink to {link!r} (absolute or empty)")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), link))
            if resolved == ".." or resolved.startswith("../"):
                raise _reject(m.name, f"is a symlink leaving the root ({link!r})")
            kind, target = "symlink", link
            symlinks.add(name)
        elif m.islnk():
            source = _normalise(m.linkname)
            if source not in files:
                raise _reject(m.name, f"is a hardlink to {m.linkname!r}, not an earlier file")
            kind, target = "hardlink", source
            files.add(name)
        else:
            raise _reject(m.name, "is a device, FIFO or other special file")
        seen[name] = kind
        folded[key] = name
        planned.append(Planned(name, kind, m.mode & 0o777, m.size, target))
    return planned


def _open_tar(fileobj: IO[bytes]) -> tarfile.TarFile:
    head = fileobj.read(2)
    fileobj.seek(0)
    if head == b"\x1f\x8b":
        return tarfile.open(fileobj=gzip.GzipFile(fileobj=fileobj, mode="rb"), mode="r:")
    return tarfile.open(fileobj=fileobj, mode="r:")


def extract(
    archive: Path, target: Path, limits: Limits = Limits(), *, whiteouts: bool = False
) -> list[Planned]:
    """Extract ``archive`` (tar or tar+gzip) into the new or empty directory ``target``.
    ``whiteouts``: a layer to merge; its whiteouts are returned, not written."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UnsafeArchiveError(
            f"refusing to extract into {target}: it exists and is not an empty directory"
        )
    with open(archive, "rb") as f:
        try:
            with _open_tar(f) as tar:
                members = tar.getmembers()
                planned = plan_extraction(members, limits, whiteouts=whiteouts)
                staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
                try:
                    _write(tar, members, planned, staging)
                    if target.exists():
                        target.rmdir()
                    os.replace(staging, target)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
        except (tarfile.TarError, OSError, EOFError) as exc:
            if isinstance(exc, UnsafeArchiveError):
                raise
            raise UnsafeArchiveError(f"cannot read archive {archive.name}: {exc}") from exc
    return planned


def _write(
    tar: tarfile.TarFile, members: list[tarfile.TarInfo], planned: list[Planned], root: Path
) -> None:
    by_name = {_normalise(m.name, whiteouts=True): m for m in members}
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for entry in planned:
            path = root / entry.name
            if entry.kind in ("whiteout", "opaque"):
                continue  # applied to the lower layers by whoever merges them
            if entry.kind == "dir":
                path.mkdir(parents=True, exist_ok=True)
                os.chmod(path, 0o755)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            _check_inside(root, path.parent)
            if entry.kind == "symlink":
                os.symlink(entry.target, path)
            elif entry.kind == "hardlink":
                os.link(root / entry.target, path, follow_symlinks=False)
            else:
                source = tar.extractfile(by_name[entry.name])
                if source is None:
                    raise _reject(entry.name, "has no data")
                mode = 0o755 if entry.mode & 0o111 else 0o644
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                fd = os.open(path, flags, mode)
                with os.fdopen(fd, "wb") as out, contextlib.closing(source):
                    shutil.copyfileobj(source, out, 1 << 20)
    finally:
        os.close(root_fd)


def _check_inside(root: Path, directory: Path) -> None:
    """Belt and braces: the real directory about to be written into is inside ``root``."""
    real = directory.resolve()
    if not real.is_relative_to(root.resolve()):
        raise _reject(str(directory), "would be written outside the target")
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode):
        raise _reject(str(directory), "is a symlink")
