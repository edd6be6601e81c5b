"""``artifacts:`` -> ``ArtifactSpec``: the images canon builds, checked.

Pure, like the rest of ``resolve``: every problem goes to ``Problems`` with its
YAML path, so one load reports all of them.

Rules (each a located diagnostic when broken):

- ``kind: base`` starts from ``scratch`` (or nothing) or from an image
  reference *pinned by digest* (``registry/repo[:tag]@sha256:<64 hex>``): a
  tag alone can move, and "same commit, same image" would no longer hold;
- ``kind: model`` names a ``kind: base`` artifact in ``from:``, adds at least
  one workspace path (``add:``) and may say how it is served
  (``serve.handler: package.module:function``);
- fields that only mean something for the other kind are rejected, not ignored;
- platforms are ``linux/amd64`` or ``linux/arm64`` (what pip can target);
- paths (``add``, ``pythonpath``) pass ``normalise_path``.
"""

from __future__ import annotations

import re

from canon.declare.diagnostics import Problems, did_you_mean
from canon.declare.interpolate import render_scalar
from canon.declare.paths import normalise_path
from canon.declare.project import ArtifactKind, ArtifactSpec
from canon.declare.schema import Artifact, ProjectFile
from canon.declare.yamlsource import YamlPath
from canon.errors import PathError

__all__ = ["PLATFORMS", "SCRATCH", "parse_pinned_reference", "resolve_artifacts"]

SCRATCH = "scratch"
PLATFORMS = ("linux/amd64", "linux/arm64")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HANDLER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
# registry host[:port] / path components [:tag] @ sha256:hex — the distribution
# reference grammar (github.com/distribution/reference), lower-case repository.
_REFERENCE = re.compile(
    r"^(?P<name>(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def parse_pinned_reference(ref: str) -> tuple[str, str | None, str | None] | None:
    """``(name, tag, digest)`` of an image reference, or None when it is malformed."""
    match = _REFERENCE.match(ref)
    if match is None:
        return None
    return match["name"], match["tag"], match["digest"]


def resolve_artifacts(decl: ProjectFile, problems: Problems) -> dict[str, ArtifactSpec]:
    """Resolve every artifact; broken ones are reported and left out."""
    found: dict[str, ArtifactSpec] = {}
    for name, artifact in decl.artifacts.items():
        spec = _Artifact(name, artifact, decl, problems).resolve()
        if spec is not None:
            found[name] = spec
    return found


class _Artifact:
    def __init__(self, name: str, artifact: Artifact, decl: ProjectFile, problems: Problems):
        self.name = name
        self.artifact = artifact
        self.decl = decl
        self.problems = problems
        self.at: YamlPath = ("artifacts", name)
        self.ok = True

    def add(self, path: YamlPath, message: str, hint: str | None = None) -> None:
        self.problems.add(path, message, hint)
        self.ok = False

    def resolve(self) -> ArtifactSpec | None:
        a = self.artifact
        kind = ArtifactKind(a.kind)
        if a.platform not in PLATFORMS:
            self.add(
                (*self.at, "platform"),
                f'unsupported platform "{a.platform}"',
                did_you_mean(a.platform, PLATFORMS) or f"use one of {', '.join(PLATFORMS)}",
            )
        base_image = base = handler = None
        if kind is ArtifactKind.BASE:
            base_image = self._base_image()
            for field_name, value in (("add", a.add), ("serve", a.serve)):
                if value:
                    self.add(
                        (*self.at, field_name),
                        f"{field_name}: is for kind: model",
                        "put trained outputs in a model image (kind: model, from: THIS_BASE)",
                    )
        else:
            base = self._base_artifact()
            handler = self._handler()
            if not a.add:
                self.add(
                    (*self.at, "add"),
                    "a model image adds at least one file",
                    "list the trained outputs, e.g. add: [build/model.json]",
                )
            if a.exclude:
                self.add((*self.at, "exclude"), "exclude: is for kind: base")
        spec = ArtifactSpec(
            name=self.name,
            kind=kind,
            base_image=base_image,
            base=base,
            platform=a.platform,
            exclude=tuple(a.exclude),
            pythonpath=tuple(self._paths("pythonpath", a.pythonpath)),
            entrypoint=tuple(a.entrypoint) if a.entrypoint is not None else None,
            env=self._env(),
            add=tuple(dict.fromkeys(self._paths("add", a.add))),
            handler=handler,
            trust_pickle=bool(a.serve is not None and a.serve.trust_pickle),
            line=self.problems.source_map.line_of(self.at),
        )
        return spec if self.ok else None

    def _base_image(self) -> str | None:
        ref = self.artifact.from_
        if ref is None or ref == SCRATCH:
            return None
        at = (*self.at, "from")
        parsed = parse_pinned_reference(ref)
        if parsed is None:
            self.add(
                at,
                f'"{ref}" is not an image reference',
                "write registry/repository@sha256:<digest>, or scratch",
            )
            return None
        if parsed[2] is None:
            self.add(
                at,
                f'base image "{ref}" is not pinned by digest',
                f"a tag can move; pin it: {parsed[0]}@sha256:... "
                f"(`skopeo inspect docker://{ref}` shows the digest)",
            )
            return None
        return ref

    def _base_artifact(self) -> str | None:
        ref = self.artifact.from_
        at = (*self.at, "from")
        bases = [n for n, a in self.decl.artifacts.items() if a.kind == "base"]
        if ref is None:
            hint = f"e.g. from: {bases[0]}" if bases else "declare a kind: base artifact first"
            self.add(at, "a model image needs from: (the base artifact it builds on)", hint)
            return None
        other = self.decl.artifacts.get(ref)
        if other is None:
            self.add(
                at,
                f'unknown artifact "{ref}"',
                did_you_mean(ref, self.decl.artifacts) or "from: names a kind: base artifact",
            )
            return None
        if other.kind != "base":
            self.add(at, f'"{ref}" is a {other.kind} image, not a base', "from: names a base")
            return None
        return ref

    def _handler(self) -> str | None:
        serve = self.artifact.serve
        if serve is None:
            return None
        if not _HANDLER.match(serve.handler):
            self.add(
                (*self.at, "serve", "handler"),
                f'handler "{serve.handler}" is not "package.module:function"',
                'e.g. handler: "weather.serve:predict"',
            )
            return None
        return serve.handler

    def _env(self) -> tuple[tuple[str, str], ...]:
        env: dict[str, str] = {}
        for key, value in self.artifact.env.items():
            at: YamlPath = (*self.at, "env", key)
            text = value if isinstance(value, str) else render_scalar(value)
            if not _ENV_NAME.match(key):
                self.add(at, f'"{key}" is not a valid environment variable name', "use A-Z, 0-9, _")
            elif "\x00" in text:
                self.add(at, f"{key} contains a NUL character")
            else:
                env[key] = text
        return tuple(sorted(env.items()))

    def _paths(self, section: str, raws: list[str]) -> list[str]:
        found = []
        for index, raw in enumerate(raws):
            try:
                found.append(normalise_path(raw))
            except PathError as exc:
                self.add((*self.at, section, index), exc.message, exc.hint)
        return found
