"""YAML text -> plain Python data plus a map of where every value was written.

``parse_yaml(data, file)`` is the only way canon reads YAML a person wrote. It
composes the node tree with PyYAML's safe loader (libyaml when available) and
converts the nodes itself, so that it can refuse what ``yaml.safe_load`` would
quietly accept and remember each node's line:

- duplicate keys (every repeat, with the line of the first definition);
- any tag outside YAML's core schema (``!!python/…``, ``!custom``, ``!!binary``,
  ``!!set``…) — never constructed, reported where written;
- mapping keys that are not strings (``1:``, ``on:``, ``~:``, ``[a]:``);
- alias bombs: the *expanded* size of the document (values, and text in
  ``_CHARS_PER_NODE`` units) is computed from memoised subtree sizes, so
  "billion laughs" fails in microseconds, not after a billion visits;
  recursive aliases (``&a [*a]``) are refused too;
- nesting deeper than ``MAX_DEPTH``, input over ``MAX_BYTES``, bytes that are
  not UTF-8 (with the byte offset and line), and syntax errors (with line and
  column from the parser's mark).

Invariants: for *any* input bytes, ``parse_yaml`` returns a ``YamlDocument`` or
raises ``DeclarationError``, nothing else. Non-fatal problems (the first three
above) are returned as ``YamlDocument.diagnostics`` with the offending value
dropped or set to ``None``, so the caller can go on and report schema problems
in the same run; fatal ones raise. Returned data contains only ``dict`` (with
``str`` keys), ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``.
Implicit timestamps (``2025-11-01``) stay the strings that were written.
Subtrees reached through an alias are shared, not copied: treat data as
read-only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from canon.errors import DeclarationError, Diagnostic

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "SourceMap",
    "YamlDocument",
    "YamlPath",
    "parse_yaml",
    "render_path",
]

MAX_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 1_000_000
# A scalar weighs one node plus one per this many characters, so that aliases
# to one huge string cannot expand to gigabytes while staying under MAX_NODES.
_CHARS_PER_NODE = 16

YamlPath = tuple[str | int, ...]

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_CORE = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_CORE + t for t in ("str", "int", "float", "bool", "null"))
_TIMESTAMP, _VALUE, _MERGE = _CORE + "timestamp", _CORE + "value", _CORE + "merge"
_SEQ, _MAP = _CORE + "seq", _CORE + "map"

# Ordinary safe-schema constructors for the scalar tags we accept. Timestamps
# and the odd "=" (tag:yaml.org,2002:value) keep their text: a date in a
# declaration is an identifier, and datetime objects are not JSON.
_constructor = SafeConstructor()
_SCALARS: dict[str, Callable[[ScalarNode], Any]] = {
    _STR: lambda n: n.value,
    _TIMESTAMP: lambda n: n.value,
    _VALUE: lambda n: n.value,
    _INT: _constructor.construct_yaml_int,
    _FLOAT: _constructor.construct_yaml_float,
    _BOOL: _constructor.construct_yaml_bool,
    _NULL: lambda n: None,
}
_KIND = {_INT: "an integer", _FLOAT: "a number", _BOOL: "a boolean", _NULL: "null"}
_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


def render_path(path: YamlPath) -> str:
    """``("stages", "train", "deps", 2)`` -> ``stages.train.deps[2]``.

    Keys that are not plain words are quoted (``data["a.b"]``) so a rendered
    path is never ambiguous.
    """
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _SIMPLE_KEY.match(part):
            out.append(("." if out else "") + part)
        else:
            quoted = part.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{quoted[:80]}"]')
    return "".join(out)


class SourceMap:
    """YAML path -> the 1-based line where that value (or its key) is written.

    Invariant: every recorded path exists in the converted data. Values inside
    an aliased subtree are not recorded again; ``line_of`` walks up to the
    nearest recorded ancestor, so every path gets the best line known.
    """

    __slots__ = ("_lines", "file")

    def __init__(self, file: str, lines: dict[YamlPath, int] | None = None) -> None:
        self.file = file
        self._lines: dict[YamlPath, int] = dict(lines or {})

    def record(self, path: YamlPath, line: int) -> None:
        # The first definition wins: later ones are duplicates or merged
        # defaults, and the first is where a reader looks.
        self._lines.setdefault(path, line)

    def line_of(self, path: YamlPath) -> int | None:
        for end in range(len(path), -1, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return None

    def __contains__(self, path: object) -> bool:
        return path in self._lines

    def __len__(self) -> int:
        return len(self._lines)


@dataclass(frozen=True)
class YamlDocument:
    """A parsed file: its data, where each value came from, non-fatal problems."""

    data: Any
    source_map: SourceMap
    diagnostics: tuple[Diagnostic, ...] = ()
    problem_paths: frozenset[YamlPath] = frozenset()  # where ``diagnostics`` point


def parse_yaml(data: bytes, file: str) -> YamlDocument:
    """Parse one YAML document; see the module docstring for what is refused.

    An empty document gives ``data=None``; the caller decides if that is fine.
    """
    if len(data) > MAX_BYTES:
        problem = f"the file is {len(data):,} bytes; the limit is {MAX_BYTES:,}"
        raise _fatal(file, problem, None, "keep large data out of declarations")
    text = _decode(data, file)
    root = _compose(text, file)
    converter = _Converter(file)
    if root is None:
        return YamlDocument(None, converter.source_map)
    converter.source_map.record((), _line(root))
    value, _, _ = converter.convert(root, (), 1)
    return YamlDocument(
        value,
        converter.source_map,
        tuple(converter.diagnostics),
        frozenset(converter.problem_paths),
    )


def _fatal(file: str, problem: str, line: int | None, hint: str | None = None) -> DeclarationError:
    diag = Diagnostic(problem, file=file, line=line, hint=hint)
    return DeclarationError(f"{file} cannot be read: {problem}", [diag], hint=hint)


def _decode(data: bytes, file: str) -> str:
    # A UTF-8 byte order mark is legal and invisible in editors; drop it.
    skip = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + skip
        line = data.count(b"\n", 0, offset) + 1
        byte = data[offset : offset + 1].hex()
        problem = f"the file is not UTF-8: byte 0x{byte} at offset {offset} (line {line})"
        raise _fatal(file, problem, line, "save the file as UTF-8") from None


def _compose(text: str, file: str) -> Node | None:
    """Run PyYAML's composer, translating every failure into a located error."""
    try:
        node: Node | None = yaml.compose(text, Loader=_Loader)
        return node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        if mark is None:
            raise _fatal(file, f"YAML syntax error: {problem}", None) from None
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        raise _fatal(file, f"YAML syntax error at {where}: {problem}", mark.line + 1) from None
    except yaml.reader.ReaderError as exc:
        problem, line = _reader_problem(exc, text)
        raise _fatal(file, problem, line, "remove control characters") from None
    except RecursionError:
        # Only the pure-Python composer recurses; libyaml caps depth itself.
        raise _fatal(file, f"nesting is deeper than {MAX_DEPTH} levels", None) from None
    except Exception as exc:  # a foreign library: translate, never leak a traceback
        raise _fatal(file, f"invalid YAML ({type(exc).__name__})", None) from None


def _reader_problem(exc: yaml.reader.ReaderError, text: str) -> tuple[str, int | None]:
    """Describe a character the YAML reader refused, with its line."""
    # Locate the character itself: libyaml reports a byte offset, the
    # pure-Python reader a character offset, so neither offset is reliable.
    raw = exc.character
    code = ord(raw) if isinstance(raw, str) and len(raw) == 1 else raw
    if not isinstance(code, int) or not 0 <= code <= 0x10FFFF:
        return "a character is not allowed in YAML", None
    found = text.find(chr(code))
    line = text.count("\n", 0, found) + 1 if found >= 0 else None
    where = f" (line {line})" if line else ""
    return f"character U+{code:04X} is not allowed in YAML{where}", line


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _Fatal(Exception):
    """Stops conversion: the document is too large or too deep to look at."""


class _Converter:
    """Node tree -> data. ``convert`` returns (value, expanded size, height)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.source_map = SourceMap(file)
        self.diagnostics: list[Diagnostic] = []
        self.problem_paths: set[YamlPath] = set()
        self._memo: dict[int, tuple[Any, int, int]] = {}
        self._active: set[int] = set()
        self._nodes = 0

    def problem(self, message: str, line: int, path: YamlPath, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(message, self.file, line, render_path(path), hint))
        self.problem_paths.add(path)

    def _stop(self, problem: str, line: int, hint: str | None = None) -> DeclarationError:
        return _fatal(self.file, problem, line, hint)

    def _count(self, n: int, node: Node) -> None:
        self._nodes += n
        if self._nodes > MAX_NODES:
            raise self._stop(
                f"expands to more than {MAX_NODES:,} values or too much text (an alias bomb?)",
                _line(node),
                "use fewer or smaller aliases",
            )

    def convert(self, node: Node, path: YamlPath, depth: int) -> tuple[Any, int, int]:
        if depth > MAX_DEPTH:
            raise self._stop(f"nesting is deeper than {MAX_DEPTH} levels", _line(node))
        if isinstance(node, ScalarNode):
            weight = 1 + len(node.value) // _CHARS_PER_NODE
            self._count(weight, node)
            if node.tag == _STR:  # most values: skip the constructor table
                return node.value, weight, 1
            return self._scalar(node, path), weight, 1
        key = id(node)
        if key in self._active:
            raise self._stop("an alias refers to a node that contains it", _line(node))
        hit = self._memo.get(key)
        if hit is not None:
            # A second visit is an alias: account for its full expansion
            # without walking it again — this is what defuses alias bombs.
            _, size, height = hit
            if depth + height - 1 > MAX_DEPTH:
                raise self._stop(f"nesting is deeper than {MAX_DEPTH} levels", _line(node))
            self._count(size, node)
            return hit
        self._active.add(key)
        try:
            if isinstance(node, SequenceNode):
                result = self._sequence(node, path, depth)
            elif isinstance(node, MappingNode):
                result = self._mapping(node, path, depth)
            else:  # pragma: no cover - the composer yields only the three kinds
                raise self._stop(f"unexpected YAML node {type(node).__name__}", _line(node))
        finally:
            self._active.discard(key)
        self._memo[key] = result
        return result

    def _check_tag(self, node: Node, expected: str, path: YamlPath) -> bool:
        if node.tag == expected:
            return True
        tag = str(node.tag)
        shown = "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag
        if tag in _SCALARS or tag in (_SEQ, _MAP):
            message = f"tag {shown} does not fit this {_NODE_WORD[type(node)]}"
        else:
            message = f"tag {shown} is not allowed; canon reads plain YAML data only"
        self.problem(message, _line(node), path, "remove the tag")
        return False

    def _scalar(self, node: ScalarNode, path: YamlPath) -> Any:
        construct = _SCALARS.get(str(node.tag))
        if construct is None:
            self._check_tag(node, _STR, path)
            return None
        try:
            return construct(node)
        except (ValueError, KeyError, TypeError, OverflowError):
            # Explicit tags on bad text ("!!int x", "!!bool maybe") and ints
            # beyond Python's digit limit end up here.
            word = _KIND.get(str(node.tag), "this type")
            self.problem(f"{_clip(node.value)} cannot be read as {word}", _line(node), path)
            return None

    def _sequence(self, node: SequenceNode, path: YamlPath, depth: int) -> tuple[Any, int, int]:
        self._count(1, node)
        if not self._check_tag(node, _SEQ, path):
            return None, 1, 1
        items: list[Any] = []
        size, height = 1, 1
        for index, child in enumerate(node.value):
            child_path = (*path, index)
            self.source_map.record(child_path, _line(child))
            value, child_size, child_height = self.convert(child, child_path, depth + 1)
            items.append(value)
            size += child_size
            height = max(height, child_height + 1)
        return items, size, height

    def _mapping(self, node: MappingNode, path: YamlPath, depth: int) -> tuple[Any, int, int]:
        self._count(1, node)
        if not self._check_tag(node, _MAP, path):
            return None, 1, 1
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merges: list[Node] = []
        size, height = 1, 1
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            line = _line(key_node)
            child_path = (*path, key)
            if key in first_line:
                self.problem(
                    f'duplicate key "{_clip(key)}": first on line {first_line[key]}, '
                    f"again on line {line}",
                    line,
                    child_path,
                    "remove one of them",
                )
            else:
                first_line[key] = line
            self.source_map.record(child_path, line)
            value, child_size, child_height = self.convert(value_node, child_path, depth + 1)
            result[key] = value
            size += child_size
            height = max(height, child_height + 1)
        # "<<" merge keys (YAML 1.1): explicit keys win over merged ones, and
        # an earlier merge source wins over a later one, as in PyYAML.
        for source in merges:
            sources = source.value if isinstance(source, SequenceNode) else [source]
            for item in sources:
                if not isinstance(item, MappingNode):
                    self.problem(
                        "<< must merge a mapping or a list of mappings",
                        _line(item),
                        path,
                    )
                    continue
                merged, merged_size, merged_height = self.convert(item, path, depth)
                if isinstance(merged, dict):
                    for key, value in merged.items():
                        result.setdefault(key, value)
                size += merged_size
                height = max(height, merged_height)
        return result, size, height

    def _key(self, node: Node, path: YamlPath) -> str | None:
        """A mapping key as a string, or None (with a diagnostic) if it is not one."""
        line = _line(node)
        if not isinstance(node, ScalarNode):
            self.problem(
                f"a mapping key must be a plain string, not a {_NODE_WORD[type(node)]}",
                line,
                path,
            )
            return None
        tag = str(node.tag)
        if tag in (_STR, _TIMESTAMP, _VALUE):
            return str(node.value)
        if tag in _KIND:
            hint = f'quote it: "{_clip(node.value)}"'
            if tag == _BOOL:
                hint += " (YAML 1.1 reads yes/no/on/off as booleans)"
            self.problem(
                f"key {_clip(node.value) or '(empty)'} is read as {_KIND[tag]}; "
                "keys must be strings",
                line,
                (*path, str(node.value)),
                hint,
            )
            return None
        self._check_tag(node, _STR, (*path, str(node.value)))
        return None


_NODE_WORD: dict[type[Node], str] = {
    ScalarNode: "scalar",
    SequenceNode: "list",
    MappingNode: "mapping",
}


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
