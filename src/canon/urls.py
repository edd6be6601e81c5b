"""Data source and database URLs: which schemes canon reads, and redaction.

A URL is shown to people (errors, ``canon data ls``, the lock) only through
``redact``: userinfo (``user:secret@``) becomes ``***@`` and the values of
query parameters that carry credentials (``X-Amz-Signature``, ``sig``,
``token``, ``password``…) become ``***`` (RELIABILITY.md invariant 5).
Credentials never belong in canon.yaml: ``credential_problem`` says why a URL
is refused, already redacted. They come from the environment or the standard
config of the store (``AWS_*`` variables, ``~/.aws``, ``PGPASSWORD``…).

Pure string functions, no I/O, importable from every layer.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "DATA_SCHEMES",
    "SECRET_OPTION_KEYS",
    "credential_problem",
    "has_userinfo",
    "redact",
    "redact_text",
    "scheme_of",
]

# Schemes a dataset source may use, and the fsspec backend each needs.
DATA_SCHEMES: dict[str, str] = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "http": "aiohttp",
    "https": "aiohttp",
    "file": "fsspec",
}

# Storage option keys that hold secrets: refused in canon.yaml.
SECRET_OPTION_KEYS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "session_token",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "account_key",
        "sas_token",
        "client_secret",
        "connection_string",
        "credentials",
    }
)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_SECRET_QUERY = re.compile(
    r"(signature|sig|token|secret|password|passwd|pwd|credential|key|auth)", re.IGNORECASE
)
_MASK = "***"


def scheme_of(url: str) -> str | None:
    """The lower-cased scheme of ``scheme://…``, or None for a plain path."""
    m = _SCHEME.match(url)
    return m.group(1).lower() if m else None


def _split_userinfo(netloc: str) -> tuple[str | None, str]:
    if "@" not in netloc:
        return None, netloc
    userinfo, _, host = netloc.rpartition("@")
    return userinfo, host


def has_userinfo(url: str) -> bool:
    """Whether ``url`` carries ``user[:password]@`` before its host."""
    if scheme_of(url) is None:
        return False
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    return "@" in netloc


def redact(url: str) -> str:
    """``url`` with credentials replaced by ``***``: safe to show and to record.

    Plain paths come back unchanged. Anything that does not parse as a URL is
    cut at its first ``@`` after the scheme, to be safe rather than exact."""
    scheme = scheme_of(url)
    if scheme is None:
        return url
    try:
        parts = urlsplit(url)
        userinfo, host = _split_userinfo(parts.netloc)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        secret = any(v and _SECRET_QUERY.search(k) for k, v in pairs)
        if userinfo is None and not secret:
            return url  # nothing to hide: keep the spelling (urlunsplit drops "///")
        netloc = host if userinfo is None else f"{_MASK}@{host}"
        query = parts.query
        if secret:
            query = urlencode(
                [(k, _MASK if v and _SECRET_QUERY.search(k) else v) for k, v in pairs],
                safe="*/:",
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        head, _, rest = url.partition("://")
        return f"{head}://{_MASK}@…" if "@" in rest else url


def credential_problem(url: str) -> str | None:
    """Why ``url`` must not be written in canon.yaml (it carries credentials), or None."""
    if scheme_of(url) is None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{redact(url)} is not a valid URL"
    userinfo, _ = _split_userinfo(parts.netloc)
    if userinfo:
        return f"{redact(url)} has credentials in it (user:password@)"
    if parts.query:
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if value and _SECRET_QUERY.search(key):
                return f"{redact(url)} has a credential in its query ({key}=…)"
    return None


_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"()<>,]+")


def redact_text(text: str) -> str:
    """``text`` (a tool's message) with every URL in it ``redact``ed."""
    return _IN_TEXT.sub(lambda m: redact(m.group()), text)
