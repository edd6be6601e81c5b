"""Declared remotes: ``remotes:``, ``default_remote:`` and a profile's ``remote:``.

Pure, like the rest of ``resolve``: every problem goes to ``Problems`` with its
YAML path, so one load reports them all. What a resolved ``RemoteSpec``
guarantees:

- ``url`` is a local directory path or a URL whose scheme canon can reach
  (``s3``, ``gs``/``gcs``, ``az``/``abfs``, ``file``, ``memory``);
- neither ``url`` nor ``endpoint_url`` carries credentials (``user:pass@``) or
  ``${...}``: secrets come from the environment or the standard AWS
  configuration, and a URL that embeds one is refused with the secret redacted
  in the message (RELIABILITY.md invariant 5);
- ``endpoint_url`` is ``http(s)://host[:port]``.

Which remote a profile uses: the profile's ``remote`` value, else
``default_remote``, else the only declared remote, else none (``-r NAME`` on
the command line always wins; that is the CLI's business).
"""

from __future__ import annotations

from canon.declare.diagnostics import Problems, did_you_mean
from canon.declare.profiles import ProfileChoice
from canon.declare.project import RemoteSpec
from canon.declare.schema import ProjectFile
from canon.declare.yamlsource import YamlPath
from canon.urls import credential_problem, redact, scheme_of

__all__ = ["PROFILE_REMOTE_KEY", "REMOTE_SCHEMES", "resolve_remotes"]

PROFILE_REMOTE_KEY = "remote"
REMOTE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "file", "memory"})
_CRED_HINT = (
    "remove the credentials from the URL; set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
    "(or a profile in ~/.aws) in the environment instead"
)


def resolve_remotes(
    decl: ProjectFile, choice: ProfileChoice, problems: Problems
) -> tuple[dict[str, RemoteSpec], str | None]:
    """The checked remotes and the name of the one the chosen profile uses."""
    remotes: dict[str, RemoteSpec] = {}
    for name, remote in decl.remotes.items():
        at: YamlPath = ("remotes", name)
        ok = _check_url(remote.url, (*at, "url"), problems)
        if remote.endpoint_url is not None:
            ok = _check_endpoint(remote.endpoint_url, (*at, "endpoint_url"), problems) and ok
        if ok:
            remotes[name] = RemoteSpec(
                name, remote.url, remote.endpoint_url, remote.region, remote.jobs
            )
    declared = list(decl.remotes)
    if decl.default_remote is not None and decl.default_remote not in decl.remotes:
        problems.add(
            ("default_remote",),
            f'default_remote "{decl.default_remote}" is not a declared remote',
            _hint(decl.default_remote, declared),
        )
    for profile, values in decl.profiles.items():
        wanted = values.get(PROFILE_REMOTE_KEY)
        if wanted is None:
            continue
        if not isinstance(wanted, str) or wanted not in decl.remotes:
            problems.add(
                ("profiles", profile, PROFILE_REMOTE_KEY),
                f"profile {profile} names remote {wanted!r}, which is not declared",
                _hint(str(wanted), declared),
            )
    return remotes, _chosen(decl, choice)


def _chosen(decl: ProjectFile, choice: ProfileChoice) -> str | None:
    wanted = choice.values.get(PROFILE_REMOTE_KEY)
    if isinstance(wanted, str) and wanted in decl.remotes:
        return wanted
    if decl.default_remote in decl.remotes:
        return decl.default_remote
    if len(decl.remotes) == 1:
        return next(iter(decl.remotes))
    return None


def _check_url(url: str, at: YamlPath, problems: Problems) -> bool:
    shown = redact(url)
    credentials = credential_problem(url)
    if credentials is not None:
        problems.add(at, f"remote URL {credentials}", _CRED_HINT)
        return False
    if "${" in url:
        problems.add(at, "remote URLs cannot use ${...}", "pick a remote per profile: remote: NAME")
        return False
    if "\x00" in url or any(ord(c) < 32 for c in url):
        problems.add(at, "the remote URL contains a control character")
        return False
    scheme = scheme_of(url)
    if scheme is not None and scheme not in REMOTE_SCHEMES:
        problems.add(
            at,
            f"unknown remote scheme {scheme}:// in {shown}",
            "use a directory path or one of: " + ", ".join(sorted(REMOTE_SCHEMES)),
        )
        return False
    if scheme is not None and scheme not in ("file", "memory") and "?" in url:
        problems.add(at, f"remote URL {shown} has a query string", "options go in their own keys")
        return False
    return True


def _check_endpoint(url: str, at: YamlPath, problems: Problems) -> bool:
    credentials = credential_problem(url)
    if credentials is not None:
        problems.add(at, f"endpoint_url {credentials}", _CRED_HINT)
        return False
    if scheme_of(url) not in ("http", "https"):
        problems.add(at, f"endpoint_url {redact(url)} is not http(s)://host[:port]")
        return False
    return True


def _hint(name: str, declared: list[str]) -> str:
    if not declared:
        return "declare it under remotes:"
    return did_you_mean(name, declared) or "declared remotes: " + ", ".join(declared)
