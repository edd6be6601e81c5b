"""canon.declare: canon.yaml + params.yaml + a profile -> a frozen ``Project``.

The first layer: everything above it works on the resolved ``Project`` and
never reads the declaration files itself. Every problem is reported at once,
located (file:line and YAML path), in one ``DeclarationError``.

    yamlsource   bytes -> data + SourceMap (safe: tags, aliases, size, depth)
    validation   data -> ProjectFile (schema diagnostics, salvage)
    profiles     which profile, and its rules
    interpolate  ${profile.x} ${data.NAME} ${params.a.b}
    paths        normalise_path: the one gate for declared paths
    resolve      ProjectFile -> Project / StageSpec
    loader       load_project / load_declaration: files in, Project out
    memo         load_project_memoised: the resolved Project reused while the files are unchanged

The loader (and pydantic behind it) is imported only when first used, so a
command that finds its declaration in the memo never pays for it.
"""

from typing import Any

from canon.declare.memo import load_project_memoised
from canon.declare.project import DatasetSpec, Dep, DepKind, EnvironmentSpec, Project, StageSpec

_LAZY = {
    "load_project": "canon.declare.loader",
    "load_declaration": "canon.declare.loader",
    "json_schema": "canon.declare.schema",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'canon.declare' has no attribute {name!r}")

__all__ = [
    "DatasetSpec",
    "Dep",
    "DepKind",
    "EnvironmentSpec",
    "Project",
    "StageSpec",
    "json_schema",
    "load_declaration",
    "load_project",
    "load_project_memoised",
]
