"""``${...}`` substitution in declared strings, without ever building code.

Three namespaces exist:

- ``${profile.NAME}`` — a value of the selected profile;
- ``${data.NAME}`` — a declared dataset's resolved workspace path;
- ``${params.a.b}`` — a value in the params file, dotted (``.0`` indexes a list).

``$${`` writes a literal ``${``. Anything else inside ``${...}`` is an error
with a "did you mean", never left in place: a typo must not reach a command.

Invariants:

- ``interpolate`` returns a plain string and is used on *one* argv element or
  *one* env value at a time, so a value such as ``0.1; rm -rf /`` stays one
  argument — it is never re-split or pasted into a shell string;
- ``shell_script`` never puts a value into the script: each reference becomes
  a quoted environment variable reference (``"${CANON_VAR_1}"``) and the value
  goes into the returned environment, so the shell expands it as data;
- only scalars are substituted; a section, a list or null is an error;
- a reference to something already reported broken (``Scope.*_broken``)
  yields ``""`` silently, so one mistake is reported once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from canon.declare.diagnostics import did_you_mean, join_hints
from canon.declare.project import render_scalar

__all__ = [
    "NAMESPACES",
    "InterpolationError",
    "Problem",
    "Scope",
    "interpolate",
    "lookup_param",
    "render_scalar",
    "shell_script",
    "unquoted_shell_syntax",
]

NAMESPACES = ("profile", "data", "params")
_OPERATORS = "|&;<>"
_SHELL_SYNTAX = re.compile(r"&&|\|\||>>|[|&;<>`]|\$\(")
_QUOTING = re.compile(r"['\"\\]")
_USAGE = "use ${profile.NAME}, ${data.NAME} or ${params.KEY}; write $${ for a literal ${"


@dataclass(frozen=True)
class Problem:
    message: str
    hint: str | None = None


class InterpolationError(Exception):
    """Every problem found in one string (there may be several references)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Scope:
    """What ``${...}`` can see. Built once per load by the resolver."""

    profile: str | None = None
    profile_values: Mapping[str, Any] = field(default_factory=dict)
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # all declared
    profile_broken: bool = False
    datasets: Mapping[str, str] = field(default_factory=dict)  # name -> workspace path
    datasets_broken: frozenset[str] = frozenset()
    all_datasets_broken: bool = False
    params: Mapping[str, Any] | None = None  # None: the params file does not exist
    params_file: str = "params.yaml"
    params_broken: bool = False
    allowed: frozenset[str] = frozenset(NAMESPACES)

    def only(self, *namespaces: str) -> Scope:
        """The same scope, with references limited to ``namespaces``."""
        return replace(self, allowed=frozenset(namespaces))


@dataclass(frozen=True)
class _Reference:
    text: str  # between "${" and "}", as written
    namespace: str
    keys: tuple[str, ...]


_Piece = str | _Reference


def interpolate(text: str, scope: Scope) -> str:
    """Substitute every ``${...}`` in ``text``; raise ``InterpolationError``."""
    if "$" not in text:  # the common case, kept cheap
        return text
    pieces, problems = _parse(text)
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        try:
            out.append(_resolve(piece, scope))
        except InterpolationError as exc:
            problems.extend(exc.problems)
    if problems:
        raise InterpolationError(problems)
    return "".join(out)


def shell_script(text: str, scope: Scope) -> tuple[str, dict[str, str]]:
    """A script for ``sh -c`` whose references are env vars, and those vars.

    The same reference used twice maps to the same variable; numbering follows
    first use, so the result is deterministic.
    """
    pieces, problems = _parse(text)
    out: list[str] = []
    env: dict[str, str] = {}
    names: dict[str, str] = {}
    quotes = _Quotes()
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            quotes.advance(piece)
            continue
        shown = "${" + piece.text + "}"
        if quotes.single:
            problems.append(
                Problem(
                    f"{shown} is inside single quotes, where sh would not expand it",
                    "use double quotes around it, or none",
                )
            )
            continue
        if quotes.escaped:
            problems.append(
                Problem(f"a backslash before {shown} would break its quoting", "remove it")
            )
            continue
        try:
            value = _resolve(piece, scope)
        except InterpolationError as exc:
            problems.extend(exc.problems)
            continue
        key = ".".join((piece.namespace, *piece.keys))
        var = names.setdefault(key, f"CANON_VAR_{len(names) + 1}")
        env[var] = value
        # Inside "..." the expansion is already quoted; outside, quote it so
        # the value is one word and is never split or globbed.
        out.append("${" + var + "}" if quotes.double else '"${' + var + '}"')
    if problems:
        raise InterpolationError(problems)
    return "".join(out), env


def unquoted_shell_syntax(text: str) -> str | None:
    """The first shell operator a shell would act on in ``text``, or None.

    A ``cmd`` string runs without a shell, so ``a && b`` or ``> log`` would
    silently become arguments; the resolver refuses them instead.
    """
    found = _SHELL_SYNTAX.search(text)
    if found is None:
        return None
    if not _QUOTING.search(text):  # nothing is quoted, so the first hit counts
        return found.group()
    quotes = _Quotes()
    for i, char in enumerate(text):
        if not quotes.single and not quotes.escaped:
            if char == "`" or text.startswith("$(", i):
                return text[i : i + 2] if char == "$" else char
            if not quotes.double and char in _OPERATORS:
                pair = text[i : i + 2]
                return pair if pair in ("&&", "||", ">>") else char
        quotes.advance(char)
    return None


def lookup_param(params: Mapping[str, Any], keys: Sequence[str], file: str) -> Any:
    """The value at ``keys`` in the params data, or ``InterpolationError``.

    A missing key gets a "did you mean" among its siblings.
    """
    current: Any = params
    for index, key in enumerate(keys):
        dotted = ".".join(keys[: index + 1])
        if isinstance(current, dict):
            if key in current:
                current = current[key]
                continue
            hint = did_you_mean(key, current)
            if hint is None and index == 0 and current:
                hint = "top-level keys: " + ", ".join(sorted(current)[:20])
            raise InterpolationError([Problem(f'{file} has no "{dotted}"', hint)])
        if isinstance(current, list):
            if key.isdigit() and int(key) < len(current):
                current = current[int(key)]
                continue
            raise InterpolationError(
                [Problem(f'{file} has no "{dotted}": the list has {len(current)} items')]
            )
        parent = ".".join(keys[:index])
        raise InterpolationError(
            [Problem(f'"{parent}" in {file} is {_kind(current)}, not a section')]
        )
    return current


def _parse(text: str) -> tuple[list[_Piece], list[Problem]]:
    """Split ``text`` into literal strings and references; ``$${`` becomes ``${``."""
    pieces: list[_Piece] = []
    problems: list[Problem] = []
    literal: list[str] = []
    i = 0
    while True:
        j = text.find("$", i)
        if j < 0:
            literal.append(text[i:])
            break
        if text.startswith("$${", j):
            literal.append(text[i:j] + "${")
            i = j + 3
            continue
        if not text.startswith("${", j):
            literal.append(text[i : j + 1])
            i = j + 1
            continue
        end = text.find("}", j + 2)
        if end < 0:
            hint = "close it with }, or write $${ for a literal ${"
            problems.append(Problem("unterminated ${", hint))
            literal.append(text[i:])
            break
        literal.append(text[i:j])
        pieces.append("".join(literal))
        literal = []
        inner = text[j + 2 : end].strip()
        parts = inner.split(".")
        if not inner or any(not p or "$" in p or "{" in p for p in parts):
            problems.append(Problem(f"malformed reference ${{{_clip(inner)}}}", _USAGE))
        else:
            pieces.append(_Reference(inner, parts[0], tuple(parts[1:])))
        i = end + 1
    pieces.append("".join(literal))
    return [p for p in pieces if p != ""], problems


def _resolve(ref: _Reference, scope: Scope) -> str:
    shown = "${" + _clip(ref.text) + "}"
    if ref.namespace not in NAMESPACES:
        hint = join_hints(did_you_mean(ref.namespace, NAMESPACES), _USAGE)
        raise InterpolationError([Problem(f"unknown reference {shown}", hint)])
    if ref.namespace not in scope.allowed:
        allowed = ", ".join("${" + n + ".…}" for n in NAMESPACES if n in scope.allowed)
        hint = f"only {allowed} can be used here" if allowed else "no ${...} can be used here"
        raise InterpolationError([Problem(f"{shown} cannot be used here", hint)])
    if ref.namespace == "params":
        return _param(ref, scope, shown)
    if len(ref.keys) != 1:
        usage = f"write ${{{ref.namespace}.NAME}}"
        raise InterpolationError([Problem(f"malformed reference {shown}", usage)])
    if ref.namespace == "profile":
        return _profile(ref.keys[0], scope, shown)
    return _dataset(ref.keys[0], scope)


def _profile(key: str, scope: Scope, shown: str) -> str:
    if scope.profile_broken:
        return ""
    declared = ", ".join(scope.profiles) or "none"
    if scope.profile is None:
        if not scope.profiles:
            hint = "canon.yaml declares no profiles: add a profiles: section"
        else:
            hint = (
                f"choose one with --profile NAME or CANON_PROFILE=NAME, or set "
                f"default_profile (declared: {declared})"
            )
        raise InterpolationError([Problem(f"{shown} is used but no profile is selected", hint)])
    if key in scope.profile_values:
        return render_scalar(scope.profile_values[key])
    elsewhere = [name for name, values in scope.profiles.items() if key in values]
    suggestion = join_hints(
        did_you_mean(key, scope.profile_values),
        f"it is set in profile {', '.join(elsewhere)}" if elsewhere else None,
    )
    message = f'profile "{scope.profile}" has no value "{_clip(key)}"'
    raise InterpolationError([Problem(message, suggestion)])


def _dataset(name: str, scope: Scope) -> str:
    if name in scope.datasets:
        return scope.datasets[name]
    if scope.all_datasets_broken or name in scope.datasets_broken:
        return ""
    hint = did_you_mean(name, scope.datasets) or (
        "declared datasets: " + ", ".join(scope.datasets)
        if scope.datasets
        else "declare it under data:"
    )
    raise InterpolationError([Problem(f'unknown dataset "{_clip(name)}"', hint)])


def _param(ref: _Reference, scope: Scope, shown: str) -> str:
    if scope.params_broken:
        return ""
    if not ref.keys:
        raise InterpolationError([Problem(f"malformed reference {shown}", "write ${params.KEY}")])
    if scope.params is None:
        message = f"{shown} is used but {scope.params_file} does not exist"
        raise InterpolationError([Problem(message, f"create {scope.params_file}")])
    value = lookup_param(scope.params, ref.keys, scope.params_file)
    if isinstance(value, dict | list) or value is None:
        hint = "name one value inside it" if isinstance(value, dict | list) else "give it a value"
        message = f"{shown} is {_kind(value)}; only a single value can be substituted"
        raise InterpolationError([Problem(message, hint)])
    return render_scalar(value)


@dataclass
class _Quotes:
    """POSIX sh quoting state after a stretch of script text (heuristic, no parsing
    of $(...) or here-documents — enough to place a reference safely)."""

    single: bool = False
    double: bool = False
    escaped: bool = False

    def advance(self, text: str) -> None:
        for char in text:
            if self.single:
                self.single = char != "'"
            elif self.escaped:
                self.escaped = False
            elif char == "\\":
                self.escaped = True
            elif self.double:
                self.double = char != '"'
            elif char == "'":
                self.single = True
            elif char == '"':
                self.double = True


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a section (a mapping)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
