"""A commit's declared environment, rebuilt: a virtual environment per lock.

``canon reproduce`` re-runs a past commit's stages in the environment that
commit declares (``environment: {python, requirements}``), not in whatever is
installed today. The environment is a venv made by the declared Python's own
``venv`` module (``--without-pip``), into which pip installs the lock with
``--no-deps`` (the lock lists every package, pinned; the image's environment
layer is installed the same way, see ``image/environment.py``).

Venvs are kept under ``.canon/envs/<key>/``, the key being the digest of the
interpreter's full version, the machine and the lock's bytes, so a second
reproduce of any commit with the same lock reuses it. A venv is complete
only once its ``canon-env.json`` is written (atomically, last); one without it
(pip killed halfway) is deleted and built again, and a failed build is removed
at once. Builders of one key take its file lock exclusively, so two reproduces
at once build it once; users then hold it shared until they exit, and ``canon
gc`` removes only venvs whose lock it can take (none is deleted under a run).

pip runs in the commit's tree (``base``), so a lock's relative references
(``-r``/``-c`` files, ``-e .``, local wheels) resolve there; such a lock's venv is
keyed by the commit too, since what those files hold is not in the lock's bytes.

A lock that lists a package but not what it requires (``--no-deps`` installs
exactly the lock) is found by ``pip check`` after the install: each line
("joblib 1.6.0 requires cloudpickle, which is not installed") is kept with
the venv as a *problem*, reported, not fatal: a stage may never import it, and
when one does, its log shows the ImportError.

Stages then run with the venv's ``bin`` first on ``PATH`` and ``VIRTUAL_ENV``
set: a stage's ``python`` is the venv's; user site-packages are off.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canon.digest import hash_bytes, hex_of
from canon.errors import EnvironmentBuildError, PackageIndexError
from canon.stores.atomic import atomic_write
from canon.urls import redact_text

MARKER = "canon-env.json"
FORMAT = 1


@dataclass(frozen=True)
class Venv:
    path: Path
    python: str  # the interpreter's full version, e.g. "3.11.9"
    requirements: str | None  # the lock's digest; None: the project pins no packages
    packages: tuple[str, ...]  # "name==version", from the venv's .dist-info folders
    reused: bool
    problems: tuple[str, ...] = ()  # `pip check`: what the lock's packages lack

    def stage_env(self) -> dict[str, str]:
        """What a stage's environment gets so that it runs in this venv."""
        return {
            "PATH": f"{self.path / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "VIRTUAL_ENV": str(self.path),
            "PYTHONNOUSERSITE": "1",
        }

    def describe(self) -> str:
        origin = "reused" if self.reused else "built"
        return (
            f"Python {self.python} + {len(self.packages)} pinned package(s), "
            f"{origin} in {self.path.parent.name}/{self.path.name[:12]}"
        )


def interpreter(declared: str | None) -> tuple[Path, str]:
    """The interpreter for ``declared`` ("3.11", "3.11.9", None = this one) and its
    full version. This process's own when it matches, else ``pythonX.Y`` on PATH."""
    mine = platform.python_version()
    if declared is None or matches(mine, declared):
        return Path(sys.executable), mine
    minor = ".".join(declared.split(".")[:2])
    found = shutil.which(f"python{minor}")
    if found is not None:
        version = _version_of(found)
        if version is not None and matches(version, declared):
            return Path(found), version
    raise EnvironmentBuildError(
        f"the environment declares Python {declared}, and no python{minor} is on PATH "
        f"(canon runs on {mine})",
        hint=f"install Python {minor}, or pass --env current to run in this environment "
        "(the report then says the environment was not rebuilt)",
    )


def matches(version: str, declared: str) -> bool:
    """Whether ``version`` ("3.11.9") is what ``declared`` ("3.11" or "3.11.9") asks."""
    return version == declared or version.startswith(declared + ".")


def _version_of(python: str) -> str | None:
    probe = "import platform; print(platform.python_version())"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode == 0:
            return done.stdout.strip() or None
    return None


# lock lines that reach files beside it: their content is not in the lock's bytes
_LOCAL_REFS = re.compile(
    r"^\s*(-r|-c|-e|-f|--requirement|--constraint|--editable|--find-links|\.{1,2}/|/|file:)"
    r"|@\s*file:",
    re.MULTILINE,
)
PIP_TIMEOUT = 1800.0  # seconds for one pip install
_UNREACHABLE = (
    "NewConnectionError",
    "Connection refused",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "timed out",
)
_HELD: dict[str, Any] = {}  # the venvs this process uses: their locks, held shared until exit


def key_of(python_version: str, requirements: bytes | None, commit: str | None = None) -> str:
    """The venv's key; ``commit`` counts only for a lock with local references."""
    local = requirements is not None and _LOCAL_REFS.search(requirements.decode(errors="replace"))
    doc = {
        "format": FORMAT,
        "python": python_version,
        "machine": platform.machine(),
        "requirements": None if requirements is None else str(hash_bytes(requirements)),
        "commit": commit if local else None,
    }
    return hex_of(hash_bytes(json.dumps(doc, sort_keys=True).encode()))


def ensure(
    envs: Path,
    declared_python: str | None,
    requirements: bytes | None,
    *,
    label: str = "",
    base: Path | None = None,
    commit: str | None = None,
) -> Venv:
    """The venv for this Python and lock under ``envs``: reused, or built now (pip in
    ``base``, where ``label`` is the lock). Held in use until this process exits."""
    python, version = interpreter(declared_python)
    key = key_of(version, requirements, commit)
    path = envs / key[:32]
    envs.mkdir(parents=True, exist_ok=True)
    held = _HELD.get(str(path))
    if held is not None:  # this process uses it already (a back-test's second model)
        venv = _reuse(path, version)
        if venv is not None:
            return venv
    lock = held or open(envs / f"{key[:32]}.lock", "a+b")  # noqa: SIM115 - held until exit
    try:
        # shared to use a built one (many reproduces at once), exclusive only to build
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)
        venv = _reuse(path, version)
        if venv is None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            venv = _reuse(path, version) or _fresh(python, path, version, requirements, label, base)
            fcntl.flock(lock.fileno(), fcntl.LOCK_SH)  # in use: gc leaves it alone
    except BaseException:
        if held is None:
            lock.close()
        raise
    _HELD[str(path)] = lock
    return venv


def _reuse(path: Path, version: str) -> Venv | None:
    done = _read_marker(path)
    if done is None or not (path / "bin" / "python").exists():
        return None
    with contextlib.suppress(OSError):
        os.utime(path / MARKER)  # last used: `canon gc` keeps recent ones
    recorded, found = done.get("requirements"), done.get("problems")
    digest = recorded if isinstance(recorded, str) else None
    problems = tuple(str(x) for x in found) if isinstance(found, list) else ()
    return Venv(path, version, digest, _packages(path), True, problems)


def _fresh(
    python: Path,
    path: Path,
    version: str,
    requirements: bytes | None,
    label: str,
    base: Path | None,
) -> Venv:
    if path.exists():
        shutil.rmtree(path)  # half-built: pip or canon was killed
    try:
        problems = _build(python, path, requirements, label, base)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # a failed build is not kept
        raise
    digest = None if requirements is None else str(hash_bytes(requirements))
    packages = _packages(path)
    marker = {
        "python": version,
        "requirements": digest,
        "packages": list(packages),
        "problems": list(problems),
    }
    atomic_write(path / MARKER, json.dumps(marker, indent=1).encode())
    return Venv(path, version, digest, packages, False, problems)


def _build(
    python: Path, path: Path, requirements: bytes | None, label: str, base: Path | None
) -> tuple[str, ...]:
    """Make the venv and install the lock; what ``pip check`` finds missing."""
    has_pip = importlib.util.find_spec("pip") is not None
    venv = [str(python), "-m", "venv", *(["--without-pip"] if has_pip else []), str(path)]
    _run(venv, f"python -m venv {path.name[:12]}", label, None)
    if requirements is None:
        return ()
    lock = path / "requirements.lock"
    lock.write_bytes(requirements)
    source = base / label if base is not None and label else lock
    # this process's pip installs into the venv (--python): no pip inside the venv needed
    pip = [sys.executable, "-m", "pip", "--python", str(path / "bin" / "python")]
    if not has_pip:
        pip = [str(path / "bin" / "python"), "-m", "pip"]
    flags = ["--disable-pip-version-check", "--no-input", "--no-deps", "--progress-bar", "off"]
    _run([*pip, "install", *flags, "-r", str(source)], f"pip install -r {label}", label, base)
    check = subprocess.run(
        [*pip, "check", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
    )
    if check.returncode == 0:
        return ()
    lines = (line.strip() for line in check.stdout.splitlines())
    return tuple(line for line in lines if line and "requires" in line)


def _run(cmd: list[str], what: str, label: str, cwd: Path | None) -> None:
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, check=False, cwd=cwd, timeout=PIP_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        raise PackageIndexError(
            f"{what} took longer than {PIP_TIMEOUT:.0f} s",
            hint="is the package index answering? (pip's own settings: pip config list)",
        ) from exc
    except OSError as exc:
        raise EnvironmentBuildError(
            f"{what}: {exc.strerror or exc}", hint="is Python's venv module installed?"
        ) from exc
    if done.returncode == 0:
        return
    text = redact_text(done.stderr.strip())  # an index URL may carry a token
    tail = "\n".join(text.splitlines()[-6:])
    if any(marker in text for marker in _UNREACHABLE):
        raise PackageIndexError(
            f"could not rebuild the environment: pip could not reach the package index "
            f"({what}):\n{tail}",
            hint="check the network and pip's index settings (pip config list); "
            "or pass --env current to run in this environment",
        )
    raise EnvironmentBuildError(
        f"could not rebuild the environment ({what}, exit {done.returncode}):\n{tail}",
        hint=f"every package in {label or 'the lock'} must be pinned and installable "
        "here; or pass --env current to run in this environment",
    )


def _read_marker(path: Path) -> dict[str, object] | None:
    try:
        doc = json.loads((path / MARKER).read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and "python" in doc else None


def _packages(path: Path) -> tuple[str, ...]:
    found: list[str] = []
    for site in path.glob("lib/python*/site-packages"):
        for info in site.glob("*.dist-info"):
            name, _, version = info.name.removesuffix(".dist-info").partition("-")
            found.append(f"{name}=={version}")
    return tuple(sorted(found, key=str.lower))


def remove_unused(envs: Path, older_than: float, *, dry_run: bool = False) -> list[Path]:
    """Delete the venvs under ``envs`` not used for ``older_than`` seconds (and half-built
    ones as old) that no process is using (their lock is free); the ones deleted."""
    if not envs.is_dir():
        return []
    cutoff = time.time() - older_than
    removed: list[Path] = []
    for path in sorted(p for p in envs.iterdir() if p.is_dir()):
        try:
            used = (path / MARKER).stat().st_mtime
        except OSError:
            used = path.stat().st_mtime  # no marker: half-built, dropped once old
        if used >= cutoff:
            continue
        with open(envs / f"{path.name}.lock", "a+b") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a reproduce is building or using it
            if not dry_run:
                shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
