"""Render ``canon exp queue start``: a live table of the experiments on a terminal
(each one's state, the stage it is at, its time, then its metrics), one line per
start and end otherwise; a summary table at the end either way."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from canon.apply.expqueue import ExperimentFinished, ExperimentProgress
from canon.events import Event, Notice

_STYLE = {"queued": "dim", "running": "yellow", "done": "green", "failed": "red"}


@dataclass
class _Row:
    name: str
    overrides: str
    state: str = "queued"
    stage: str = ""
    started: float | None = None
    duration: float | None = None
    commit: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""


class QueueView:
    def __init__(
        self, queued: Iterable[tuple[str, str]], *, live: bool, console: Any = None
    ) -> None:
        """``queued``: (name, overrides) of the experiments about to run, in order."""
        from rich.console import Console

        self.console = console or Console(highlight=False)
        self.rows = {name: _Row(name, overrides) for name, overrides in queued}
        self._guard = threading.Lock()
        self._live: Any = None
        if live and self.console.is_terminal:
            from rich.live import Live

            self._live = Live(
                get_renderable=self._render,
                console=self.console,
                refresh_per_second=4,
                transient=True,
            )
            self._live.start()

    def __call__(self, event: Event) -> None:
        with self._guard:
            if isinstance(event, ExperimentProgress):
                row = self._row(event.name)
                if event.status == "started":
                    row.state, row.started = "running", time.monotonic()
                    self._line(f"[yellow]started[/]  {_e(row.name)}  [dim]{_e(row.overrides)}[/]")
                else:
                    row.stage = f"{event.stage} {event.status}"
            elif isinstance(event, ExperimentFinished):
                row = self._row(event.name)
                row.state = "done" if event.ok else "failed"
                row.duration, row.metrics = event.duration, dict(event.metrics)
                row.commit, row.message, row.stage = (event.commit or "")[:12], event.message, ""
                state = f"done {row.commit}" if event.ok else "FAILED"
                extra = f" {event.message}" if event.message else ""
                self._line(
                    f"[{_STYLE[row.state]}]{_e(event.name):<32} {state}[/]  "
                    f"{event.duration:.2f}s{_e(extra)}  [dim]{_e(_metrics(row.metrics))}[/]"
                )
            elif isinstance(event, Notice):
                self._line(f"[blue]note[/] {_e(event.message)}")

    def _row(self, name: str) -> _Row:
        return self.rows.setdefault(name, _Row(name, ""))

    def _line(self, text: str) -> None:
        if self._live is None:  # on a terminal the live table says it
            self.console.print(text, soft_wrap=True)
        elif text.startswith("[blue]note"):
            self._live.console.print(text, soft_wrap=True)

    def _render(self) -> Any:
        from rich.table import Table

        table = Table(show_edge=False, header_style="bold", box=None)
        for column in ("experiment", "state", "at", "time", "metrics"):
            table.add_column(column, justify="right" if column == "time" else "left")
        now = time.monotonic()
        counts: dict[str, int] = {}
        with self._guard:  # rich's refresh thread: the workers may add a row meanwhile
            rows = [_Row(**r.__dict__) for r in self.rows.values()]
        for row in rows:
            counts[row.state] = counts.get(row.state, 0) + 1
            if row.duration is not None:
                took = f"{row.duration:.1f}s"
            elif row.started is not None:
                took = f"{now - row.started:.1f}s"
            else:
                took = ""
            at = row.stage or (row.message[:60] if row.state == "failed" else row.overrides)
            table.add_row(
                _e(row.name),
                f"[{_STYLE[row.state]}]{row.state}[/]",
                _e(at),
                took,
                _e(_metrics(row.metrics)),
            )
        table.caption = "  ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return table

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
            if self.rows:
                self.console.print(self._render())
        done = sum(r.state == "done" for r in self.rows.values())
        failed = sum(r.state == "failed" for r in self.rows.values())
        if done or failed:
            self.console.print(f"{done} done, {failed} failed")


def _e(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _metrics(metrics: dict[str, Any]) -> str:
    shown = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()]
    return "  ".join(shown[:4]) + ("  …" if len(shown) > 4 else "")
