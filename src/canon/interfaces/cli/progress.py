"""Render apply events: a live rich display on a terminal, plain lines otherwise,
JSON lines with ``--json``; a summary table at the end."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from typing import Any

from canon.events import (
    ApplyFinished,
    ApplyStarted,
    DatasetFetching,
    DatasetPinned,
    Event,
    Notice,
    StageFinished,
    StageOutput,
    StageStarted,
)

_STYLE = {
    "ran": "green",
    "restored": "cyan",
    "up-to-date": "dim",
    "failed": "red",
    "skipped": "yellow",
}


class JsonLines:
    def __init__(self) -> None:
        self._guard = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._guard:
            sys.stdout.write(json.dumps(event.to_dict(), default=str) + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        pass


class Console:
    """Live progress for a person: running stages with their last output line."""

    _live: Any  # rich's Live view while on a terminal, else None

    def __init__(self, *, live: bool) -> None:
        from rich.console import Console as RichConsole

        self.console = RichConsole(stderr=False, highlight=False)
        self._start()
        if live and self.console.is_terminal:
            from rich.live import Live

            view = Live(self._render(), console=self.console, refresh_per_second=8, transient=True)
            view.start()
            self._live = view

    def _start(self) -> None:
        """The state both renderers keep (``Plain`` shares it, without rich)."""
        self._guard = threading.Lock()
        self._running: dict[str, tuple[float, str, str]] = {}
        self._fetching: dict[str, tuple[float, int, int]] = {}  # dataset: start, files, bytes
        self._finished: list[StageFinished] = []
        self._total = 0
        self._live = None

    def _render(self) -> Any:
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        done = len(self._finished)
        table.add_row(f"[bold]{done}/{self._total}[/] stages done")
        now = time.monotonic()
        for name, (t0, files, size) in self._fetching.items():
            rate = size / max(now - t0, 1e-3) / 1e6
            table.add_row(
                f"  [magenta]pinning[/] data.{name} [dim]{files:,} file(s), "
                f"{size / 1e6:,.1f} MB ({rate:,.0f} MB/s)[/]"
            )
        for name, (t0, action, line) in self._running.items():
            table.add_row(f"  [yellow]{action}[/] {name} [dim]{now - t0:5.1f}s {line[:80]}[/]")
        return table

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def __call__(self, event: Event) -> None:
        with self._guard:
            self._handle(event)

    def _print(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def _handle(self, event: Event) -> None:
        if isinstance(event, ApplyStarted):
            self._total = len(event.stages)
            self._print(
                f"[bold]canon apply[/]: {event.pending} change(s) planned"
                + (f", profile {event.profile}" if event.profile else "")
            )
        elif isinstance(event, DatasetFetching):
            started = self._fetching.get(event.name, (time.monotonic(), 0, 0))[0]
            self._fetching[event.name] = (started, event.files, event.bytes)
        elif isinstance(event, DatasetPinned):
            self._fetching.pop(event.name, None)
            self._print(
                f"[magenta]pinned[/]     data.{event.name} {event.digest[:19]} "
                f"({event.files} file(s), {event.size:,} bytes)"
            )
        elif isinstance(event, StageStarted):
            self._running[event.name] = (time.monotonic(), event.action, "")
            why = f" [dim]({'; '.join(event.reasons)})[/]" if event.reasons else ""
            self._print(f"[yellow]{event.action:<10}[/] {event.name}{why}")
        elif isinstance(event, StageOutput):
            if event.name in self._running:
                t0, action, _ = self._running[event.name]
                self._running[event.name] = (t0, action, event.line)
        elif isinstance(event, StageFinished):
            self._running.pop(event.name, None)
            self._finished.append(event)
            style = _STYLE.get(event.status, "white")
            extra = f" in {event.duration:.2f}s" if event.duration else ""
            self._print(f"[{style}]{event.status:<10}[/] {event.name}{extra}")
            if event.message and event.status in ("failed", "skipped"):
                for line in event.message.splitlines():
                    self._print(f"            [dim]{line}[/]")
        elif isinstance(event, Notice):
            self._print(f"[blue]note[/]       {event.message}")
        elif isinstance(event, ApplyFinished):
            self._summary(event)
        self._refresh()

    def _summary(self, event: ApplyFinished) -> None:
        from rich.table import Table

        if self._live is not None:
            self._live.stop()
            self._live = None
        table = Table(title=None, show_edge=False, header_style="bold")
        table.add_column("stage")
        table.add_column("result")
        table.add_column("time", justify="right")
        table.add_column("metrics")
        for f in self._finished:
            metrics = "  ".join(f"{k}={_fmt(v)}" for k, v in sorted(f.metrics.items()))
            style = _STYLE.get(f.status, "white")
            table.add_row(
                f.name,
                f"[{style}]{f.status}[/]",
                f"{f.duration:.2f}s" if f.duration else "",
                metrics,
            )
        if self._finished:
            self.console.print(table)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(event.counts.items()))
        verdict = "[green]done[/]" if event.ok else "[red]failed[/]"
        self._print(f"{verdict} in {event.duration:.2f}s ({counts or 'nothing to do'})")

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


_MARKUP = re.compile(r"\[(?:/|/?(?:bold|dim|magenta|yellow|blue|green|red|cyan|white))\]")


class Plain(Console):
    """The same lines for a pipe or a file, without rich: its import and its table
    layout cost ~30 ms, a sixth of an experiment's own time (``canon exp run``)."""

    def __init__(self) -> None:
        self._start()

    def _print(self, text: str) -> None:
        sys.stdout.write(_MARKUP.sub("", text) + "\n")
        sys.stdout.flush()

    def _summary(self, event: ApplyFinished) -> None:
        rows = [("stage", "result", "time", "metrics")]
        for f in self._finished:
            metrics = "  ".join(f"{k}={_fmt(v)}" for k, v in sorted(f.metrics.items()))
            rows.append((f.name, f.status, f"{f.duration:.2f}s" if f.duration else "", metrics))
        if self._finished:
            widths = [max(len(r[i]) for r in rows) for i in range(3)]
            for r in rows:
                cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2])]
                self._print(" " + "  ".join([*cells, r[3]]).rstrip())
        counts = ", ".join(f"{n} {s}" for s, n in sorted(event.counts.items()))
        verdict = "done" if event.ok else "failed"
        self._print(f"{verdict} in {event.duration:.2f}s ({counts or 'nothing to do'})")


def for_person(*, live: bool) -> Console:
    """``Console`` on a terminal, ``Plain`` otherwise."""
    return Console(live=live) if sys.stdout.isatty() else Plain()


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
