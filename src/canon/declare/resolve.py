"""A validated ``ProjectFile`` + params + a profile -> the resolved ``Project``.

Everything here is pure: no file is read (the loader does that), every
problem is added to ``Problems`` instead of raised, so one load reports all.

What a ``StageSpec`` guarantees (see also ``canon.declare.project``):

- ``argv`` is exactly what is executed. A string ``cmd`` is split with
  ``shlex`` *before* substitution and each element is substituted on its own,
  so values never change how a command is split. With ``shell: true`` argv is
  ``("sh", "-c", script)`` and values reach the script only through
  ``CANON_VAR_n`` environment variables (``interpolate.shell_script``).
- ``env`` holds the declared variables (substituted), the ``CANON_VAR_n``
  values, ``CANON_STAGE`` and ``CANON_PARAMS`` (canonical JSON of the stage's
  declared params), sorted by name; no name or value contains NUL.
- every path went through ``normalise_path``; ``outs`` is outs then metrics,
  de-duplicated in order; deps are de-duplicated by address.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from canon.declare.artifacts import resolve_artifacts
from canon.declare.datasets import resolve_datasets
from canon.declare.deployments import resolve_deployments
from canon.declare.diagnostics import Problems, did_you_mean
from canon.declare.interpolate import (
    InterpolationError,
    Scope,
    interpolate,
    lookup_param,
    render_scalar,
    shell_script,
    unquoted_shell_syntax,
)
from canon.declare.paths import normalise_path
from canon.declare.profiles import ProfileChoice
from canon.declare.project import (
    Dep,
    DepKind,
    EnvironmentSpec,
    Project,
    StageSpec,
)
from canon.declare.remotes import resolve_remotes
from canon.declare.schema import ProjectFile, Stage
from canon.declare.validation import Broken
from canon.declare.yamlsource import YamlPath
from canon.errors import PathError

__all__ = ["ParamsData", "resolve_project"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_ENV = ("CANON_PARAMS", "CANON_STAGE")
_DATA_PREFIX = "data."
_MAX_ARG_BYTES = 128 * 1024  # Linux MAX_ARG_STRLEN, terminating NUL included
_SECRET_ENV = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL", re.IGNORECASE
)
_TOO_LONG_HINT = "pass large values in a file the stage reads (a dep), not in argv or env"
_QUOTING = re.compile(r"['\"\\]")
_SHLEX_SPACE = re.compile(r"[ \t\r\n]+")  # shlex.shlex.whitespace


@dataclass(frozen=True)
class ParamsData:
    """The params file as loaded: ``values`` is None when the file does not exist;
    ``broken`` when it exists but could not be read (already reported)."""

    file: str
    values: Mapping[str, Any] | None
    broken: bool = False


def resolve_project(
    root: Path,
    decl: ProjectFile,
    problems: Problems,
    *,
    choice: ProfileChoice,
    params: ParamsData,
    broken: Broken,
    config_file: str = "canon.yaml",
) -> Project:
    """Resolve ``decl``; the result is only meaningful if ``problems`` stays empty."""
    scope = Scope(
        profile=choice.name,
        profile_values=choice.values,
        profiles=decl.profiles,
        profile_broken=choice.broken,
        params=params.values,
        params_file=params.file,
        params_broken=params.broken,
        datasets_broken=broken.datasets,
        all_datasets_broken=broken.all_datasets,
    )
    environment = EnvironmentSpec(
        python=decl.environment.python,
        requirements=_path(decl.environment.requirements, ("environment", "requirements"), problems)
        if decl.environment.requirements is not None
        else None,
    )
    datasets, failed = resolve_datasets(decl, scope, problems)
    scope = replace(
        scope,
        datasets={name: spec.where for name, spec in datasets.items()},
        datasets_broken=broken.datasets | failed,
    )
    stages = {
        name: _Stage(name, stage, scope, problems).resolve() for name, stage in decl.stages.items()
    }
    remotes, remote = resolve_remotes(decl, choice, problems)
    return Project(
        root=root,
        name=decl.project,
        profile=choice.name,
        profile_values=dict(choice.values),
        environment=environment,
        datasets=datasets,
        stages=stages,
        params_file=params.file,
        params=dict(params.values or {}),
        config_file=config_file,
        artifacts=resolve_artifacts(decl, problems),
        remotes=remotes,
        remote=remote,
        deployments=resolve_deployments(decl, problems),
    )


class _Stage:
    """Resolves one stage; every problem goes to ``problems`` with its path."""

    def __init__(self, name: str, stage: Stage, scope: Scope, problems: Problems) -> None:
        self.name = name
        self.stage = stage
        self.scope = scope
        self.problems = problems
        self.at: YamlPath = ("stages", name)

    def resolve(self) -> StageSpec:
        stage = self.stage
        param_values = self._params()
        env = self._env()
        argv = self._argv(env)
        env["CANON_STAGE"] = self.name
        env["CANON_PARAMS"] = json.dumps(
            dict(param_values), sort_keys=True, separators=(",", ":"), ensure_ascii=True
        )
        self._check_exec(argv, env)
        metrics = _unique(self._paths("metrics", stage.metrics))
        outs = _unique([*self._paths("outs", stage.outs), *metrics])
        return StageSpec(
            name=self.name,
            argv=tuple(argv),
            env=tuple(sorted(env.items())),
            deps=self._deps(),
            params=tuple(stage.params),
            param_values=param_values,
            outs=tuple(outs),
            metrics=tuple(metrics),
            shell=stage.shell,
            deterministic=stage.deterministic,
            line=self.problems.source_map.line_of(self.at),
        )

    def _argv(self, env: dict[str, str]) -> list[str]:
        cmd = self.stage.cmd
        at: YamlPath = (*self.at, "cmd")
        if self.stage.shell:
            if not isinstance(cmd, str):
                self.problems.add(at, "with shell: true, cmd must be one string (the script)")
                return []
            try:
                script, variables = shell_script(cmd, self.scope)
            except InterpolationError as exc:
                self._report(at, exc)
                return []
            env.update(variables)
            return ["sh", "-c", script]
        if isinstance(cmd, str):
            syntax = unquoted_shell_syntax(cmd)
            if syntax is not None:
                self.problems.add(
                    at,
                    f"cmd uses shell syntax {syntax!r} but runs without a shell",
                    "set shell: true, or quote it to pass it as a plain argument",
                )
                return []
            raw = _split(cmd)
            if raw is None:
                self.problems.add(
                    at, "cannot split cmd: a quote is not closed", "balance the quotes"
                )
                return []
            parts = [(at, part) for part in raw]
        else:
            parts = [((*at, i), part) for i, part in enumerate(cmd)]
        if not parts:
            self.problems.add(at, "cmd is empty", "write the command to run")
            return []
        argv = [self._interpolate(part, where) for where, part in parts]
        return [a for a in argv if a is not None]

    def _env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for key, value in self.stage.env.items():
            at: YamlPath = (*self.at, "env", key)
            if not _ENV_NAME.match(key):
                self.problems.add(
                    at, f'"{key}" is not a valid environment variable name', "use A-Z, 0-9 and _"
                )
                continue
            if key in _RESERVED_ENV or key.startswith("CANON_VAR_"):
                self.problems.add(at, f"{key} is set by canon itself", "choose another name")
                continue
            if _SECRET_ENV.search(key) and value not in ("", None):
                # canon.yaml and canon.lock are committed: a secret written here leaks
                self.problems.add(
                    at,
                    f"{key} looks like a secret; canon.yaml (and the lock it feeds) is committed",
                    f"remove it here: stages inherit canon's environment, so export {key} "
                    "where canon runs (or a secrets file named in a profile)",
                )
                continue
            text = self._interpolate(value, at) if isinstance(value, str) else render_scalar(value)
            if text is not None:
                env[key] = text
        return env

    def _params(self) -> tuple[tuple[str, Any], ...]:
        scope = self.scope
        values: dict[str, Any] = {}
        for index, entry in enumerate(self.stage.params):
            at: YamlPath = (*self.at, "params", index)
            keys = entry.split(".")
            if any(not k for k in keys):
                self.problems.add(at, f'"{entry}" is not a params key', "write train or train.lr")
                continue
            if scope.params_broken:
                continue
            if scope.params is None:
                self.problems.add(
                    at,
                    f'stage uses param "{entry}" but {scope.params_file} does not exist',
                    f"create {scope.params_file}",
                )
                continue
            try:
                values[entry] = lookup_param(scope.params, keys, scope.params_file)
            except InterpolationError as exc:
                self._report(at, exc)
        return tuple(sorted(values.items()))

    def _deps(self) -> tuple[Dep, ...]:
        deps: dict[str, Dep] = {}
        scope = self.scope
        for index, raw in enumerate(self.stage.deps):
            at: YamlPath = (*self.at, "deps", index)
            if raw.startswith(_DATA_PREFIX):
                name = raw[len(_DATA_PREFIX) :]
                if name in scope.datasets:
                    deps.setdefault(raw, Dep(DepKind.DATA, raw, scope.datasets[name]))
                elif not (scope.all_datasets_broken or name in scope.datasets_broken):
                    hint = did_you_mean(name, scope.datasets) or (
                        f"declare it under data: (declared: {', '.join(scope.datasets)})"
                        if scope.datasets
                        else "declare it under data:"
                    )
                    self.problems.add(at, f'unknown dataset "{name}"', hint)
                continue
            path = _path(raw, at, self.problems)
            if path is not None:
                deps.setdefault(path, Dep(DepKind.PATH, path, path))
        return tuple(deps.values())

    def _paths(self, section: str, raws: Iterable[str]) -> list[str]:
        found = []
        for index, raw in enumerate(raws):
            path = _path(raw, (*self.at, section, index), self.problems)
            if path is not None:
                found.append(path)
        return found

    def _check_exec(self, argv: list[str], env: dict[str, str]) -> None:
        """What execve() would refuse, refused now, where it was written."""
        # A NUL would silently truncate the value (a YAML "\0" escape can
        # write one); Linux caps each argument and "NAME=value" string.
        at = (*self.at, "cmd")
        if any("\x00" in a for a in argv):
            self.problems.add(at, "the command contains a NUL character")
        if any(len(a.encode("utf-8", "surrogatepass")) >= _MAX_ARG_BYTES for a in argv):
            self.problems.add(at, "a command argument is longer than 128 KiB", _TOO_LONG_HINT)
        for key, value in env.items():
            at = (*self.at, "env", key)
            if "\x00" in value:
                self.problems.add(at, f"{key} contains a NUL character")
            elif len(value.encode("utf-8", "surrogatepass")) + len(key) + 2 > _MAX_ARG_BYTES:
                self.problems.add(at, f"{key} is longer than 128 KiB", _TOO_LONG_HINT)

    def _interpolate(self, text: str, at: YamlPath) -> str | None:
        return _interpolate(text, self.scope, at, self.problems)

    def _report(self, at: YamlPath, exc: InterpolationError) -> None:
        for problem in exc.problems:
            self.problems.add(at, problem.message, problem.hint)


def _interpolate(text: str, scope: Scope, at: YamlPath, problems: Problems) -> str | None:
    try:
        return interpolate(text, scope)
    except InterpolationError as exc:
        for problem in exc.problems:
            problems.add(at, problem.message, problem.hint)
        return None


def _path(raw: str, at: YamlPath, problems: Problems) -> str | None:
    if "${" in raw:
        problems.add(
            at,
            "paths cannot use ${...}",
            "only cmd, env and data sources are substituted; name a dataset as data.NAME",
        )
        return None
    try:
        return normalise_path(raw)
    except PathError as exc:
        problems.add(at, exc.message, exc.hint)
        return None


def _split(cmd: str) -> list[str] | None:
    """``shlex.split`` in POSIX mode (quotes group words and are removed, as in
    sh), or None if a quote is unbalanced or the string ends in a backslash."""
    if not _QUOTING.search(cmd):
        # Without quotes or backslashes shlex only splits on its whitespace;
        # doing that directly keeps loading 100 stages in a few milliseconds.
        return [word for word in _SHLEX_SPACE.split(cmd) if word]
    try:
        return shlex.split(cmd, comments=False, posix=True)
    except ValueError:  # "No closing quotation" / "No escaped character"
        return None


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
