"""How image events look in a terminal (``canon build``, ``push-image``, ``pull-image``)."""

from __future__ import annotations

import json
import sys

import click

from canon.events import Event, ImageBuilt, ImagePushed, Notice


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


class ImageEvents:
    """An ``Emit`` that prints one line per image event (or JSON lines)."""

    def __init__(self, as_json: bool = False) -> None:
        self.as_json = as_json

    def __call__(self, event: Event) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps(event.to_dict(), default=str) + "\n")
            return
        if isinstance(event, ImageBuilt):
            why = f"  ({', '.join(event.reasons)})" if event.reasons else ""
            took = f" in {event.duration:.1f}s" if event.duration else ""
            click.echo(
                f"{event.status:<11} image.{event.name}  {event.digest}  {size(event.size)}"
                f"{took}{why}"
            )
        elif isinstance(event, ImagePushed):
            click.echo(
                f"pushed      image.{event.name}  {event.reference}\n"
                f"            {event.uploaded} blob(s) uploaded ({size(event.bytes_uploaded)}), "
                f"{event.skipped} already there"
            )
        elif isinstance(event, Notice):
            click.echo(f"note: {event.message}", err=True)
