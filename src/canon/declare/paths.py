"""Workspace paths as declared: one gate every declared path goes through.

``normalise_path(raw)`` turns what a person wrote in canon.yaml (a dep, an out,
a metric, a dataset source, the requirements file, the params file) into the
one spelling the rest of canon uses, or rejects it with a ``PathError``.

Invariants of a returned path:

- it is relative, POSIX (``/``-separated), non-empty and has no empty, ``.``
  or ``..`` segment, so it names something *inside* the workspace root and is
  not the root itself;
- it contains no NUL, control character or backslash, no URL scheme, no drive
  letter and no percent-encoded ``.``, ``/``, ``\\``, ``%`` or NUL;
- no segment is ``.git`` (at any depth, any letter case) and the first segment
  is not ``.canon``: canon never reads or writes those through a declaration.

Paths are *rejected*, never "fixed" (RELIABILITY.md, invariant 3): MLflow's
fifteen path-traversal fixes each "cleaned" one more spelling of ``..``.
Symlinks are checked at I/O time by the layers that touch the disk, because
only they know what the file system holds at that moment.
"""

from __future__ import annotations

import json
import re

from canon.errors import PathError

__all__ = ["MAX_PATH_CHARS", "has_url_scheme", "normalise_path"]

MAX_PATH_CHARS = 4096

# scheme://…  (RFC 3986 scheme syntax), e.g. s3://, gs://, https://, file://
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# C:/… or C:\… — absolute on Windows, and never a portable workspace path.
_DRIVE = re.compile(r"^[A-Za-z]:")
# Percent-encodings of characters that change a path's meaning when a later
# consumer (a URL, a web route, a remote) decodes them: "." "/" "\" NUL "%".
_ENCODED = re.compile(r"%(2e|2f|5c|00|25)", re.IGNORECASE)
# Segments of word characters, "-" and "." that do not start with "."
# (so never "..", ".git" or ".canon"), joined by single "/": nothing to reject
# and nothing to normalise, however the rules below evolve.
_PLAIN = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Directories that belong to Git and to canon itself. Compared case-folded
# because macOS and Windows file systems are case-insensitive by default.
_NEVER_ANYWHERE = frozenset({".git"})
_NEVER_AT_ROOT = frozenset({".canon"})


def has_url_scheme(raw: str) -> bool:
    """Whether ``raw`` looks like ``scheme://…`` rather than a path."""
    return _URL_SCHEME.match(raw) is not None


def normalise_path(raw: str) -> str:
    """Return ``raw`` as a normalised workspace-relative POSIX path.

    Raises ``PathError`` (message says what is wrong, hint says what to write
    instead) for anything that could name a place outside the workspace or
    inside ``.git`` / ``.canon``. See the module docstring for the invariants.
    """
    if _PLAIN.match(raw) and len(raw) <= MAX_PATH_CHARS:
        return raw  # already normal: the common case, checked with one regex
    if not raw or not raw.strip():
        raise PathError("path is empty", hint="write a path relative to the project root")
    if len(raw) > MAX_PATH_CHARS:
        raise PathError(f"path is longer than {MAX_PATH_CHARS} characters")
    if "\x00" in raw:
        raise PathError("path contains a NUL byte")
    if _CONTROL.search(raw):
        raise PathError("path contains a control character (newline, tab, …)")
    if has_url_scheme(raw):
        raise PathError(
            f"{_show(raw)} is a URL, not a path in the project",
            hint="write a path relative to the project root",
        )
    if "\\" in raw:
        raise PathError(f"{_show(raw)} contains a backslash", hint="use / to separate directories")
    if _DRIVE.match(raw):
        raise PathError(f"{_show(raw)} is an absolute Windows path", hint=_RELATIVE_HINT)
    if raw.startswith("/"):
        raise PathError(f"{_show(raw)} is an absolute path", hint=_RELATIVE_HINT)
    if raw.startswith("~"):
        raise PathError(
            f"{_show(raw)} starts with ~ (a home directory, outside the project)",
            hint=_RELATIVE_HINT,
        )
    if _ENCODED.search(raw):
        raise PathError(
            f"{_show(raw)} contains a percent-encoded '.', '/', '\\', '%' or NUL",
            hint="write the characters themselves",
        )

    # Empty and "." segments carry no meaning ("a//b/./c" is "a/b/c"); ".."
    # could leave the root, so it is refused outright rather than resolved.
    segments = [s for s in raw.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise PathError(
            f"{_show(raw)} contains '..'",
            hint="paths must stay inside the project; write them from the project root",
        )
    if not segments:
        raise PathError(f"{_show(raw)} is the project root itself", hint="name a file or directory")
    folded = [s.casefold() for s in segments]
    if any(s in _NEVER_ANYWHERE for s in folded):
        raise PathError(f"{_show(raw)} is inside .git, which canon never touches")
    if folded[0] in _NEVER_AT_ROOT:
        raise PathError(f"{_show(raw)} is inside .canon, canon's own cache")
    return "/".join(segments)


_RELATIVE_HINT = "write a path relative to the project root"


def _show(raw: str) -> str:
    """Quote a path for a message, shortened so a hostile value cannot flood it."""
    text = raw if len(raw) <= 120 else raw[:117] + "…"
    # json.dumps escapes quotes and control characters but keeps "données" readable.
    return json.dumps(text, ensure_ascii=False)
