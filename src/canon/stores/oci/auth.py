"""Registry credentials and the token dance (distribution ``docs/spec/auth/token.md``).

Where credentials come from, first match wins, and only for the host they are for:

1. ``CANON_REGISTRY_USERNAME`` / ``CANON_REGISTRY_PASSWORD``, for the registry
   the profile names (``registry:``) — never for another host;
2. the Docker config (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``),
   ``auths.<host>.auth`` (base64 ``user:password``) or ``identitytoken``.

A ``401`` carries ``WWW-Authenticate: Bearer realm=…,service=…,scope=…``: we ask
the realm for a token (with the credentials as basic auth when we have them)
and retry once; ``Basic realm=…`` means send the credentials directly. Tokens
are cached per scope for the client's life. Credentials and tokens are never
logged, never put in an error message (RELIABILITY.md invariant 5).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def __repr__(self) -> str:  # never show the password
        return f"Credentials({self.username!r}, ***)"


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() not in ("bearer", "basic"):
        return None
    return Challenge(scheme.lower(), dict(_PARAM.findall(rest)))


def _docker_config(environ: Mapping[str, str]) -> dict[str, object]:
    directory = environ.get("DOCKER_CONFIG")
    path = Path(directory) / "config.json" if directory else Path.home() / ".docker/config.json"
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def credentials_for(
    host: str, *, configured_host: str | None = None, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    env = os.environ if environ is None else environ
    user, password = env.get("CANON_REGISTRY_USERNAME"), env.get("CANON_REGISTRY_PASSWORD")
    if user and password is not None and configured_host is not None and host == configured_host:
        return Credentials(user, password)
    auths = _docker_config(env).get("auths")
    if not isinstance(auths, dict):
        return None
    keys: tuple[str, ...] = (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/")
    if host in ("registry-1.docker.io", "docker.io"):
        keys += ("https://index.docker.io/v1/", "index.docker.io")
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        token = entry.get("identitytoken")
        if isinstance(token, str) and token:
            return Credentials("<token>", token)
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            try:
                name, _, secret = base64.b64decode(auth).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return Credentials(name, secret)
    return None
