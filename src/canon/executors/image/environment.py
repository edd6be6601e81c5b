"""The environment layer: the requirements lock installed for the *target* platform.

pip installs wheels for another platform and Python when told to
(``--platform --python-version --implementation --only-binary=:all:``), so a
Linux/amd64 image is built the same way on any machine; ``--no-deps`` because
the lock already lists every package, pinned. The result lands in
``/canon/env`` (on ``PYTHONPATH``; scripts in ``/canon/env/bin`` on ``PATH``).

What varies between two installs of the same lock, and how it is normalised
(checked by installing twice and diffing the trees):

- ``*.pyc`` / ``__pycache__``: never written (``--no-compile``) and dropped if present;
- console scripts' ``#!`` line names the *installing* interpreter
  (``#!/home/me/.venv/bin/python``): rewritten to ``#!/usr/bin/env python3``,
  and the script's hash and size in the wheel's ``RECORD`` updated to match;
- ``direct_url.json`` (names a local path for non-index installs): dropped;
- file times, owners and modes: set by the layer writer (``tarball``).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from canon.errors import ImageError
from canon.executors.image.tarball import Entry

ENV_PREFIX = "canon/env"  # in the image: /canon/env
SHEBANG = b"#!/usr/bin/env python3"
_PLATFORM_TAGS = {
    "linux/amd64": (
        "manylinux_2_28_x86_64",
        "manylinux2014_x86_64",
        "manylinux2010_x86_64",
        "manylinux1_x86_64",
        "linux_x86_64",
    ),
    "linux/arm64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64", "linux_aarch64"),
}


def pip_command(requirements: Path, target: Path, platform: str, python: str) -> list[str]:
    tags = _PLATFORM_TAGS.get(platform)
    if tags is None:
        raise ImageError(f"cannot install Python packages for platform {platform}")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    cmd += ["--target", str(target), "--no-deps", "--no-compile", "--only-binary=:all:"]
    cmd += ["--implementation", "cp", "--python-version", python]
    for tag in tags:
        cmd += ["--platform", tag]
    return [*cmd, "-r", str(requirements)]


@contextlib.contextmanager
def installed(
    requirements: bytes, platform: str, python: str, prefix: str = ENV_PREFIX
) -> Iterator[list[Entry]]:
    """Install the lock into a temp dir; its files as normalised entries under
    ``prefix``, read only when the layer writer reaches them (one file in memory at a
    time, not the whole environment), while the context is open."""
    with tempfile.TemporaryDirectory(prefix="canon-env-") as tmp:
        req = Path(tmp) / "requirements.lock"
        req.write_bytes(requirements)
        target = Path(tmp) / "site"
        cmd = pip_command(req, target, platform, python)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise ImageError(
                f"pip could not install the requirements lock for {platform}, "
                f"Python {python}:\n{tail}",
                hint="every requirement must be pinned and have a wheel for the target "
                "platform (only binary wheels can be installed for another platform)",
            )
        yield entries_of(target, prefix)


def entries_of(site: Path, prefix: str = ENV_PREFIX) -> list[Entry]:
    """A pip ``--target`` directory as layer entries, normalised (see module doc)."""
    scripts = _fix_scripts(site)
    entries: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(site):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel_dir = os.path.relpath(dirpath, site)
        for name in filenames:
            if name.endswith((".pyc", ".pyo")) or name == "direct_url.json":
                continue
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            path = f"{prefix}/{rel}"
            if os.path.islink(full):
                link = os.readlink(full)
                if link.startswith("/") or ".." in link.split("/"):
                    continue
                entries.append(Entry(path, "symlink", target=link))
                continue
            executable = os.access(full, os.X_OK)
            data = scripts.get(rel)
            if data is not None:
                entries.append(Entry.data(path, data, executable=executable))
            else:
                size = os.path.getsize(full)
                entries.append(Entry(path, "file", executable, Path(full).read_bytes, size))
    return entries


def _fix_scripts(site: Path) -> dict[str, bytes]:
    """Rewrite scripts' shebangs; patch their RECORD rows. Returns rel path -> new bytes."""
    fixed: dict[str, bytes] = {}
    bin_dir = site / "bin"
    if bin_dir.is_dir():
        for script in sorted(bin_dir.iterdir()):
            data = script.read_bytes()
            if script.is_file() and data.startswith(b"#!") and b"python" in data.split(b"\n")[0]:
                fixed[f"bin/{script.name}"] = SHEBANG + data[data.index(b"\n") :]
    if not fixed:
        return fixed
    for record in site.glob("*.dist-info/RECORD"):
        rows = list(csv.reader(io.StringIO(record.read_text())))
        changed = False
        for row in rows:
            if len(row) == 3 and row[0].startswith("../../bin/"):
                new = fixed.get(row[0][len("../../") :])
                if new is not None:
                    digest = base64.urlsafe_b64encode(hashlib.sha256(new).digest()).rstrip(b"=")
                    row[1], row[2] = f"sha256={digest.decode()}", str(len(new))
                    changed = True
        if changed:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(rows)
            fixed[str(record.relative_to(site))] = out.getvalue().encode()
    return fixed
