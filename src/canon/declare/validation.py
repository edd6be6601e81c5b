"""canon.yaml data -> ``ProjectFile``, with schema errors turned into diagnostics.

pydantic reports a ``loc`` such as ``("stages", "t", "cmd", "list[constrained-str]", 0)``;
people need ``canon.yaml:7 stages.t.cmd[0]: expected a string, got an integer (1)``.
``validate_declaration`` does that translation, and then *salvages*: it drops
each invalid stage, dataset, profile or field and validates the rest, so that
the resolver can still report its own problems in the same run. ``Broken``
records what was dropped so that references to it (``data.NAME``,
``${profile.x}``, ``${params.x}``) do not cascade into misleading errors.

Invariants: the returned model, when not None, is a valid ``ProjectFile``; it
equals the declaration exactly when ``diagnostics`` is empty. A schema error
at or below a path that already has a YAML-level diagnostic is not repeated.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from canon.declare.diagnostics import Problems, did_you_mean
from canon.declare.schema import ProjectFile
from canon.declare.yamlsource import YamlDocument, YamlPath
from canon.errors import Diagnostic

__all__ = ["Broken", "Validated", "validate_declaration"]

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_NAME_RULE = "use letters, digits, '_' and '-', starting with a letter or '_' (at most 100)"
_SECTIONS = ("stages", "data", "profiles", "artifacts", "deployments")


@dataclass(frozen=True)
class Broken:
    """Parts of canon.yaml left out after failing validation."""

    datasets: frozenset[str] = frozenset()
    all_datasets: bool = False
    profiles: frozenset[str] = frozenset()
    all_profiles: bool = False  # the profiles section or default_profile is unusable
    params: bool = False  # the params file name is unusable


@dataclass(frozen=True)
class Validated:
    model: ProjectFile | None
    diagnostics: tuple[Diagnostic, ...] = ()
    broken: Broken = field(default_factory=Broken)


def validate_declaration(doc: YamlDocument) -> Validated:
    """Validate canon.yaml's data; see the module docstring for the contract."""
    problems = Problems(doc.source_map)
    data = doc.data
    if data is None:
        problems.add((), f"{problems.file} is empty", "run `canon init` to start a project")
        return Validated(None, tuple(problems.items))
    if not isinstance(data, dict):
        problems.add(
            (),
            f"{problems.file} must be a mapping of fields (project:, stages:, …), "
            f"not {_describe(data)}",
        )
        return Validated(None, tuple(problems.items))
    try:
        return Validated(ProjectFile.model_validate(data))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    pruned = _report(errors, data, doc.problem_paths, problems)
    salvaged, broken = _prune(data, pruned)
    try:
        model: ProjectFile | None = ProjectFile.model_validate(salvaged)
    except ValidationError:  # pragma: no cover - pruning removes every failing part
        model = None
    return Validated(model, tuple(problems.items), broken)


@dataclass
class _Entry:
    path: YamlPath
    via_union: bool
    expected: str | None
    message: str
    hint: str | None
    value: Any


def _report(
    errors: Iterable[Mapping[str, Any]],
    data: dict[str, Any],
    known: frozenset[YamlPath],
    problems: Problems,
) -> list[YamlPath]:
    """Add one diagnostic per faulty path; return the paths to prune."""
    entries: list[_Entry] = []
    prune: list[YamlPath] = []
    for err in errors:
        loc = tuple(err["loc"])
        kind = str(err["type"])
        if kind == "missing":
            path, _, union = _walk(loc[:-1], data)
            name = str(loc[-1])
            prune.append((*path, name))
            message = f'missing required field "{name}"'
            entries.append(_Entry(path, union, None, message, None, None))
            continue
        path, key_error, union = _walk(loc, data)
        prune.append(path)
        entries.append(_entry(kind, path, key_error, union, err))
    # A union (`cmd: str | list[str]`) reports one error per member. When a
    # member got further (an error *inside* the list), the shallow "not a
    # string" from the other member is noise.
    deeper = {e.path[:i] for e in entries for i in range(len(e.path))}
    by_path: dict[YamlPath, list[_Entry]] = {}
    for entry in entries:
        if entry.via_union and entry.expected and entry.path in deeper:
            continue
        if any(entry.path[:i] in known for i in range(len(entry.path) + 1)):
            continue  # the YAML layer already explained this value
        by_path.setdefault(entry.path, []).append(entry)
    for path, group in by_path.items():
        typed = [e for e in group if e.expected]
        if typed:
            words = list(dict.fromkeys(e.expected for e in typed if e.expected))
            got = _describe(typed[0].value)
            hint = next((e.hint for e in typed if e.hint), None)
            problems.add(path, f"expected {_or(words)}, got {got}", hint)
        for entry in group:
            if not entry.expected:
                problems.add(path, entry.message, entry.hint)
    return prune


def _entry(
    kind: str, path: YamlPath, key_error: bool, union: bool, err: Mapping[str, Any]
) -> _Entry:
    value = err.get("input")
    if kind in _EXPECTED:
        hint = None
        if kind == "string_type" and isinstance(value, int | float | bool):
            hint = "quote the value so YAML reads it as a string"
        elif kind in ("dict_type", "model_type", "list_type") and value is None:
            hint = "an empty value is null in YAML: write {} or [], or remove the line"
        return _Entry(path, union, _EXPECTED[kind], "", hint, value)
    if kind == "extra_forbidden":
        name = str(path[-1]) if path else "?"
        fields = _fields_at(path[:-1])
        hint = did_you_mean(name, fields)
        if hint is None and fields:
            hint = "known fields: " + ", ".join(fields)
        return _Entry(path, union, None, f'unknown field "{name}"', hint, value)
    if kind == "string_pattern_mismatch":
        what = "name" if key_error else "value"
        return _Entry(path, union, None, f'{what} "{_clip(value)}" is not valid', _NAME_RULE, value)
    if kind == "string_too_short":
        return _Entry(path, union, None, "must not be empty", None, value)
    if kind == "string_too_long":
        limit = (err.get("ctx") or {}).get("max_length", "the limit")
        return _Entry(path, union, None, f"is longer than {limit} characters", None, value)
    return _Entry(path, union, None, str(err.get("msg", kind)), None, value)


def _walk(loc: tuple[Any, ...], data: Any) -> tuple[YamlPath, bool, bool]:
    """Map a pydantic ``loc`` to a path in ``data``.

    Returns (path, is_key_error, skipped_a_union_member). Elements that are not
    keys or indexes of the data (union member tags like ``"str"``) are skipped.
    """
    path: list[str | int] = []
    current = data
    union = False
    for element in loc:
        if element == "[key]":
            return tuple(path), True, union
        in_dict = isinstance(current, dict) and isinstance(element, str) and element in current
        in_list = (
            isinstance(current, list) and isinstance(element, int) and 0 <= element < len(current)
        )
        if in_dict or in_list:
            current = current[element]
            path.append(element)
        else:
            union = True
    return tuple(path), False, union


def _fields_at(path: YamlPath) -> list[str]:
    """Field names of the schema model found at ``path`` (for "did you mean")."""
    annotation: Any = ProjectFile
    for element in path:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(str(element))
            if info is None:
                return []
            annotation = info.annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` down to the structural type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            structural = [
                a
                for a in members
                if typing.get_origin(a) in (dict, list)
                or (isinstance(a, type) and issubclass(a, BaseModel))
            ]
            annotation = (structural or members)[0]
        else:
            return annotation


def _prune(data: dict[str, Any], paths: Iterable[YamlPath]) -> tuple[dict[str, Any], Broken]:
    """Copy ``data`` without the stages, datasets, profiles or fields at fault."""
    top = dict(data)
    copied: set[str] = set()
    drop: dict[str, set[Any]] = {}
    whole: set[str] = set()
    for path in paths:
        if not path:
            continue
        head = str(path[0])
        section = top.get(head)
        if head in _SECTIONS and len(path) >= 2 and isinstance(section, dict):
            if head not in copied:
                top[head] = section = dict(section)
                copied.add(head)
            section.pop(path[1], None)
            drop.setdefault(head, set()).add(path[1])
        elif head == "policies" and len(path) >= 2 and isinstance(section, list):
            drop.setdefault(head, set()).add(path[1])
        else:
            whole.add(head)
            top.pop(head, None)
    if "policies" in drop and isinstance(top.get("policies"), list):
        top["policies"] = [p for i, p in enumerate(top["policies"]) if i not in drop["policies"]]
    if "project" in whole:
        top["project"] = "invalid"  # a placeholder: the error is already reported
    broken = Broken(
        datasets=frozenset(str(n) for n in drop.get("data", ())),
        all_datasets="data" in whole,
        profiles=frozenset(str(n) for n in drop.get("profiles", ())),
        all_profiles=bool({"profiles", "default_profile"} & whole),
        params="params" in whole,
    )
    return top, broken


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"an integer ({_clip(value)})"
    if isinstance(value, float):
        return f"a number ({_clip(value)})"
    if isinstance(value, str):
        return f'a string ("{_clip(value)}")'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _or(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _clip(value: Any, limit: int = 60) -> str:
    text = str(value) if not isinstance(value, int) or abs(value) < 10**60 else "a huge number"
    return text if len(text) <= limit else text[: limit - 1] + "…"
