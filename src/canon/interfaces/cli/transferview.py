"""Render push / fetch / pull events: a rich progress bar on a terminal, one
summary line otherwise (JSON lines with ``--json`` come from ``progress.JsonLines``)."""

from __future__ import annotations

import threading
from typing import Any

from canon.events import Event, Notice, TransferFinished, TransferProgress, TransferStarted


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


class TransferConsole:
    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(highlight=False)
        self._guard = threading.Lock()
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, event: Event) -> None:
        with self._guard:
            self._handle(event)

    def _handle(self, event: Event) -> None:
        if isinstance(event, TransferStarted):
            verb = "pushing" if event.direction == "push" else "fetching"
            if self.console.is_terminal and self._progress is None:
                from rich.progress import (
                    BarColumn,
                    DownloadColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                    TransferSpeedColumn,
                )

                self._progress = Progress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    DownloadColumn(binary_units=True),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    console=self.console,
                    transient=True,
                )
                self._progress.start()
            if self._progress is not None:
                desc = f"{verb} {event.objects:,} objects"
                if self._task is None:
                    self._task = self._progress.add_task(desc, total=event.size)
                else:
                    self._progress.update(self._task, description=desc, total=event.size)
        elif isinstance(event, TransferProgress):
            if self._progress is not None and self._task is not None:
                self._progress.advance(self._task, event.size)
        elif isinstance(event, Notice):
            self.console.print(f"[blue]note[/] {event.message}")
        elif isinstance(event, TransferFinished):
            self.close()
            self.console.print(summary(event))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None


def summary(event: TransferFinished) -> str:
    verb = {"push": "pushed", "fetch": "fetched", "pull": "pulled"}.get(
        event.direction, event.direction
    )
    where = "to" if event.direction == "push" else "from"
    if event.objects == 0 and not event.restored:
        text = f"Everything is up to date ({event.direction} {where} {event.remote})"
    else:
        text = (
            f"{verb} {event.objects:,} object(s), {human_size(event.size)} {where} {event.remote} "
            f"in {event.duration:.2f}s ({event.requests:,} remote request(s), "
            f"{event.present:,} already there)"
        )
    if event.restored:
        text += f"; restored {', '.join(event.restored)}"
    return text
