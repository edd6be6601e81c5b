"""Change values in a YAML file a person wrote without losing what they wrote around them.

An experiment's ``params.yaml`` is the user's file with a few values overridden
(``-S train.lr=0.3``), and ``canon exp promote`` brings it back onto their
branch: re-dumping the data would drop every comment, blank line, key order
quirk and quoting choice. ``set_scalars`` instead replaces, in the text, only
the spans of the scalars being changed (PyYAML's node marks give each one's
start and end), each new value written as YAML writes that scalar.

It answers ``None`` — the caller then writes the data out whole — when a change
cannot be made in place: a key that is not in the file, a value that is a
mapping or a list (on either side), a scalar reached through an alias, or a
file that does not compose.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

Path = tuple[str, ...]


def set_scalars(text: str, changes: Mapping[Path, Any]) -> str | None:
    """``text`` with the scalar at each path (keys from the top) set to its value."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    spans: list[tuple[int, int, str]] = []
    for path, value in changes.items():
        node = _find(root, path)
        rendered = None if node is None else _scalar(value, node.style)
        if node is None or rendered is None or node.start_mark is None:
            return None
        spans.append((node.start_mark.index, node.end_mark.index, rendered))
    starts = sorted(spans)
    if any(a[1] > b[0] for a, b in itertools.pairwise(starts)):
        return None  # two paths reach one scalar (an alias): not a plain edit
    out = text
    for start, end, rendered in sorted(spans, reverse=True):
        out = out[:start] + rendered + out[end:]
    return out


def _find(node: Node | None, path: Sequence[str]) -> ScalarNode | None:
    for key in path:
        if not isinstance(node, MappingNode):
            return None
        node = next(
            (v for k, v in node.value if isinstance(k, ScalarNode) and k.value == key), None
        )
    if not isinstance(node, ScalarNode) or "\n" in str(node.value):
        return None
    if node.style in ("|", ">"):
        return None  # a block scalar: its span is lines, not a token
    return node


def _scalar(value: Any, style: str | None) -> str | None:
    """``value`` as a YAML scalar, in the quotes the old one was written in if it is
    a string (a JSON string is a valid double-quoted YAML scalar)."""
    if isinstance(value, (dict, list, tuple)):
        return None
    if isinstance(value, str) and style == '"':
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and style == "'" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    text = yaml.safe_dump(value, default_flow_style=True, width=2**30, allow_unicode=True)
    text = text.removesuffix("\n").removesuffix("\n...").strip()
    return None if "\n" in text else text
