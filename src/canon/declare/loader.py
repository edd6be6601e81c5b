"""Read canon.yaml and params.yaml from a project root into a ``Project``.

``load_project`` is the one entry point the rest of canon uses; it runs every
check this layer has — YAML, schema, profiles, params, paths, interpolation —
and raises one ``DeclarationError`` listing *all* problems found
("canon.yaml has 3 problems"), each with file:line and YAML path. An unknown
``--profile`` / ``CANON_PROFILE`` raises ``ProfileError`` instead: that is a
mistake in the invocation, not in the files.

Invariants: for any file contents, ``load_project`` returns a ``Project`` or
raises a ``CanonError`` (``DeclarationError`` or ``ProfileError``); it reads
at most ``MAX_BYTES + 1`` bytes of each file, only regular files, and only a
params file that stays inside the project root after following symlinks. It
never writes, and never prints.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from canon.declare.diagnostics import Problems, problems_error
from canon.declare.paths import normalise_path
from canon.declare.profiles import check_profiles, select_profile
from canon.declare.project import Project
from canon.declare.resolve import ParamsData, resolve_project
from canon.declare.schema import ProjectFile
from canon.declare.validation import Broken, validate_declaration
from canon.declare.yamlsource import MAX_BYTES, SourceMap, YamlDocument, parse_yaml
from canon.errors import DeclarationError, Diagnostic, PathError

__all__ = ["CONFIG_FILE", "load_declaration", "load_project"]

CONFIG_FILE = "canon.yaml"


def load_declaration(root: Path) -> tuple[ProjectFile, SourceMap]:
    """canon.yaml as written (no profile applied, nothing substituted).

    Raises ``DeclarationError`` with every YAML and schema problem.
    """
    doc = _read_config(Path(root))
    validated = validate_declaration(doc)
    diagnostics = [*doc.diagnostics, *validated.diagnostics]
    if diagnostics or validated.model is None:
        raise problems_error(diagnostics)
    return validated.model, doc.source_map


def load_project(
    root: Path,
    *,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Project:
    """The resolved project at ``root`` for the chosen profile.

    ``environ`` defaults to ``os.environ``; only ``CANON_PROFILE`` is read.
    ``overrides`` (``{"train.C": 0.5}``, from ``-S``) replace existing params
    values before anything is resolved; an unknown key is a ``DeclarationError``.
    """
    root = Path(root).absolute()
    doc = _read_config(root)
    validated = validate_declaration(doc)
    problems = Problems(doc.source_map)
    problems.extend(doc.diagnostics)
    problems.extend(validated.diagnostics)
    decl = validated.model
    if decl is None:
        raise problems_error(problems.items)
    env = os.environ if environ is None else environ
    choice = select_profile(decl, profile, env, validated.broken, problems)
    check_profiles(decl, problems)
    params = _load_params(root, decl, validated.broken, problems)
    if overrides and not params.broken:
        from canon.declare.overrides import apply_overrides

        params = ParamsData(params.file, apply_overrides(params.values, overrides, params.file))
    project = resolve_project(
        root,
        decl,
        problems,
        choice=choice,
        params=params,
        broken=validated.broken,
        config_file=CONFIG_FILE,
    )
    if problems:
        raise problems_error(problems.items)
    return project


def _read_config(root: Path) -> YamlDocument:
    path = root / CONFIG_FILE
    if not path.exists() and not path.is_symlink():
        raise DeclarationError(
            f"no {CONFIG_FILE} in {root}", hint="run `canon init` to start a project here"
        )
    return parse_yaml(_read_bytes(path, CONFIG_FILE), CONFIG_FILE)


def _read_bytes(path: Path, display: str) -> bytes:
    """At most ``MAX_BYTES + 1`` bytes of a regular file (enough to tell it is too big)."""
    try:
        if not path.is_file():
            raise DeclarationError(
                f"{display} is not a regular file",
                [Diagnostic("not a regular file", file=display)],
            )
        with path.open("rb") as stream:
            return stream.read(MAX_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DeclarationError(
            f"cannot read {display}: {reason}", [Diagnostic(reason, file=display)]
        ) from exc


def _load_params(root: Path, decl: ProjectFile, broken: Broken, problems: Problems) -> ParamsData:
    """The params file's data; problems go to ``problems``, never raised."""
    if broken.params:
        return ParamsData(decl.params, None, broken=True)
    try:
        name = normalise_path(decl.params)
    except PathError as exc:
        problems.add(("params",), exc.message, exc.hint)
        return ParamsData(decl.params, None, broken=True)
    path = root / name
    if not path.exists() and not path.is_symlink():
        return ParamsData(name, None)
    # The declared name was checked; a symlink could still lead anywhere.
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        problems.add(("params",), f"{name} leads outside the project (through a symlink)")
        return ParamsData(name, None, broken=True)
    try:
        doc = parse_yaml(_read_bytes(path, name), name)
    except DeclarationError as exc:
        problems.extend(exc.diagnostics)
        return ParamsData(name, None, broken=True)
    problems.extend(doc.diagnostics)
    if doc.data is None:  # an empty params file is a project with no params yet
        return ParamsData(name, {})
    if not isinstance(doc.data, dict):
        problems.extend(
            [
                Diagnostic(
                    f"{name} must be a mapping of names to values, not a "
                    f"{'list' if isinstance(doc.data, list) else 'single value'}",
                    file=name,
                    line=doc.source_map.line_of(()),
                )
            ]
        )
        return ParamsData(name, None, broken=True)
    return ParamsData(name, doc.data)
