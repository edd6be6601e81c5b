"""Which profile a load uses, and the rules profile values follow.

A profile (``local``, ``prod``, …) injects values such as data locations into
``${profile.x}``. The profile is chosen, first match wins, by:

1. the ``profile`` argument (``canon --profile NAME``);
2. the ``CANON_PROFILE`` environment variable (empty counts as unset);
3. ``default_profile`` in canon.yaml;
4. ``local``, if canon.yaml declares it;
5. otherwise none — and then any ``${profile.x}`` is an error.

Invariants: an unknown name from (1) or (2) raises ``ProfileError`` (a mistake
in the invocation, not in the file), listing the declared profiles with a
"did you mean"; an undeclared ``default_profile`` is a located diagnostic in
canon.yaml whichever profile is chosen. Profile values never contain ``${``:
they are inputs of interpolation, never templates themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from canon.declare.diagnostics import Problems, did_you_mean, join_hints
from canon.declare.schema import ProjectFile
from canon.declare.validation import Broken
from canon.errors import ProfileError

__all__ = ["PROFILE_ENV", "ProfileChoice", "check_profiles", "select_profile"]

PROFILE_ENV = "CANON_PROFILE"
FALLBACK_PROFILE = "local"


@dataclass(frozen=True)
class ProfileChoice:
    """The chosen profile (or none) and why it was chosen.

    ``broken`` means the chosen profile is unusable because of a problem that
    is already reported; references to it are then not checked again.
    """

    name: str | None
    values: Mapping[str, Any] = field(default_factory=dict)
    source: str = "none"  # "argument", "CANON_PROFILE", "default_profile", "local", "none"
    broken: bool = False


def select_profile(
    decl: ProjectFile,
    requested: str | None,
    environ: Mapping[str, str],
    broken: Broken,
    problems: Problems,
) -> ProfileChoice:
    """Choose the profile for this load; see the module docstring for the order."""
    _check_default(decl, broken, problems)
    from_env = environ.get(PROFILE_ENV) or None
    if requested:
        name, source = requested, "argument"
    elif from_env:
        name, source = from_env, PROFILE_ENV
    elif decl.default_profile:
        name, source = decl.default_profile, "default_profile"
    elif FALLBACK_PROFILE in decl.profiles:
        name, source = FALLBACK_PROFILE, FALLBACK_PROFILE
    else:
        return ProfileChoice(None, broken=broken.all_profiles)
    if name in decl.profiles:
        return ProfileChoice(name, dict(decl.profiles[name]), source)
    if source == "default_profile" or broken.all_profiles or name in broken.profiles:
        return ProfileChoice(name, source=source, broken=True)  # already reported
    origin = "--profile" if source == "argument" else f"{PROFILE_ENV}={name}"
    raise ProfileError(f'unknown profile "{name}" (from {origin})', hint=_declared_hint(decl, name))


def check_profiles(decl: ProjectFile, problems: Problems) -> None:
    """Report profile values that contain ``${`` (profiles are not templates)."""
    for profile, values in decl.profiles.items():
        for key, value in values.items():
            if isinstance(value, str) and "${" in value:
                problems.add(
                    ("profiles", profile, key),
                    "profile values cannot contain ${...}",
                    "write the value itself; profiles are what ${profile.x} reads",
                )


def _check_default(decl: ProjectFile, broken: Broken, problems: Problems) -> None:
    name = decl.default_profile
    if name is None or name in decl.profiles or broken.all_profiles or name in broken.profiles:
        return
    problems.add(
        ("default_profile",),
        f'default_profile "{name}" is not a declared profile',
        _declared_hint(decl, name),
    )


def _declared_hint(decl: ProjectFile, name: str) -> str | None:
    if not decl.profiles:
        return "canon.yaml declares no profiles: add a profiles: section"
    declared = "declared profiles: " + ", ".join(decl.profiles)
    return join_hints(did_you_mean(name, decl.profiles), declared)
