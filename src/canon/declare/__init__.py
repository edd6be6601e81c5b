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
"""

from canon.declare.loader import load_declaration, load_project
from canon.declare.project import DatasetSpec, Dep, DepKind, EnvironmentSpec, Project, StageSpec
from canon.declare.schema import json_schema

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
]
