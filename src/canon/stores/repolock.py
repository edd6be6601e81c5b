"""The repository lock: one writer (``canon apply``) per workspace.

``fcntl.flock`` on ``.canon/apply.lock``: the kernel drops it when the holder
dies, however it dies, so a dead holder never blocks anyone. The file also
says who holds it (pid, host, command, start time) so a second apply can name
the holder, and so the next holder can tell that the previous one died
without cleaning up (its record is still there) and reap what it left.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canon.errors import LockedError


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started: float
    argv: tuple[str, ...]

    def describe(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, started {when}: {' '.join(self.argv)}"


def _read_holder(fd: int) -> Holder | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw: Any = json.loads(os.read(fd, 65536) or b"null")
        if not isinstance(raw, dict):
            return None
        return Holder(
            int(raw["pid"]),
            str(raw["host"]),
            float(raw["started"]),
            tuple(str(a) for a in raw["argv"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


class RepoLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.previous: Holder | None = None  # a holder that died without releasing

    def acquire(self, argv: Sequence[str], *, wait: float = 0.0) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    os.close(fd)
                    who = holder.describe() if holder else "another canon process"
                    raise LockedError(
                        f"the workspace is locked by {who}",
                        hint="wait for it to finish, or pass --wait SECONDS to queue behind it",
                    ) from None
                time.sleep(0.1)
        self.previous = _read_holder(fd)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "argv": list(argv),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)  # a clean exit leaves no holder record
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RepoLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
