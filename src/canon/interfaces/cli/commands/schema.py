"""``canon schema``: the JSON Schema of canon.yaml, for editors."""

from __future__ import annotations

import click

from canon.interfaces.cli.commands._common import print_json


@click.command("schema", help="Print the JSON Schema of canon.yaml for editors.")
def command() -> int:
    from canon.declare import json_schema

    print_json(json_schema())
    return 0
