"""A client for the OCI distribution HTTP API (distribution-spec ``spec.md``).

What it guarantees:

- **verified reads**: every blob and manifest fetched by digest is hashed and
  its size checked before it is kept (blobs go through ``BlobWriter.commit``);
- **push order**: blobs first, the manifest last, so a tag never points at a
  manifest whose blobs are missing; a ``HEAD`` per blob skips what the
  registry already has (pushing a model image whose base is there uploads one layer);
- **uploads**: monolithic (``POST`` + ``PUT ?digest=``) for small blobs,
  chunked (``PATCH`` with ``Content-Range``) for large ones, resuming from the
  registry's ``Range`` after a failed chunk; ``Location`` may be absolute or
  relative (resolved against the request URL);
- **auth**: bearer tokens from a ``WWW-Authenticate`` challenge or basic auth
  (``canon.stores.oci.auth``); redirects are followed by hand and credentials
  are dropped when the redirect leaves the registry's host;
- **bounded retries**, jittered, only for idempotent requests (GET, HEAD) and
  for transient answers (connection errors, 429, 5xx).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import httpx

from canon.digest import Digest, hash_bytes, is_digest
from canon.errors import ImageError, IntegrityError, RegistryError
from canon.stores.oci import spec as oci
from canon.stores.oci.auth import Credentials, credentials_for, parse_challenge
from canon.stores.oci.layout import ImageLayout

ACCEPT = ", ".join((oci.MANIFEST, oci.INDEX, oci.DOCKER_MANIFEST, oci.DOCKER_LIST))
CHUNK = 8 << 20
MONOLITHIC_MAX = 32 << 20
RETRIES = 4
_TRANSIENT = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Reference:
    """``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        rest, digest = text, None
        if "@" in rest:
            rest, raw = rest.split("@", 1)
            if not is_digest(raw):
                raise ImageError(
                    f"{text!r}: not a sha256 digest after @", hint="registry/repo@sha256:<64 hex>"
                )
            digest = Digest(raw)
        tag = None
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            rest, tag = rest.rsplit(":", 1)
        first, _, path = rest.partition("/")
        if not path or ("." not in first and ":" not in first and first != "localhost"):
            first, path = "docker.io", rest if "/" in rest else f"library/{rest}"
        if not path:
            raise ImageError(f"{text!r} is not an image reference", hint="registry/repo:tag")
        return cls(first, path, tag, digest)

    @property
    def host(self) -> str:
        return "registry-1.docker.io" if self.registry == "docker.io" else self.registry

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def is_insecure(host: str) -> bool:
    """Loopback registries speak plain HTTP (as Docker assumes for localhost)."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "127.0.0.1", "::1", "[::1]")


class RegistryClient:
    """One registry host. ``transport`` lets tests use ``httpx.MockTransport``."""

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        insecure: bool | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.host = host
        scheme = "http" if (is_insecure(host) if insecure is None else insecure) else "https"
        self.base = f"{scheme}://{host}"
        self.credentials = credentials or credentials_for(host, configured_host=host)
        self.client = httpx.Client(transport=transport, timeout=timeout, follow_redirects=False)
        self.tokens: dict[str, str] = {}
        self.sleep = sleep
        self.bytes_uploaded = 0

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------

    def _auth_header(self, url: httpx.URL, scope: str) -> dict[str, str]:
        if url.netloc.decode() != self.host:
            return {}  # never send credentials to another host
        token = self.tokens.get(scope) or self.tokens.get("*")
        if token is not None:
            return {"Authorization": token}
        return {}

    def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        ok: tuple[int, ...] = (200,),
        stream: bool = False,
    ) -> httpx.Response:
        idempotent = method in ("GET", "HEAD")
        if isinstance(url, httpx.URL):
            target = url
        else:
            target = httpx.URL(url if "://" in url else f"{self.base}{url}")
        attempt = 0
        authed = False
        redirects = 0
        while True:
            all_headers = {**(headers or {}), **self._auth_header(target, scope)}
            try:
                req = self.client.build_request(
                    method, target, headers=all_headers, content=content
                )
                response = self.client.send(req, stream=stream)
            except httpx.HTTPError as exc:
                if idempotent and attempt < RETRIES:
                    attempt += 1
                    self._backoff(attempt)
                    continue
                raise RegistryError(
                    f"{method} {self._show(target)} failed: {type(exc).__name__}",
                    hint=f"is the registry {self.host} up and reachable?",
                ) from exc
            status = response.status_code
            if status == 401 and not authed and self._authenticate(response, scope):
                response.close()
                authed = True
                continue
            if status in (301, 302, 303, 307, 308) and "location" in response.headers:
                response.close()
                redirects += 1
                if redirects > 5:
                    raise RegistryError(f"too many redirects from {self._show(target)}")
                target = target.join(response.headers["location"])
                if status == 303:
                    method, content = "GET", None
                continue
            if status in _TRANSIENT and idempotent and attempt < RETRIES:
                response.close()
                attempt += 1
                self._backoff(attempt, response.headers.get("retry-after"))
                continue
            if status not in ok:
                if stream:
                    response.read()
                raise self._error(method, target, response)
            return response

    def _backoff(self, attempt: int, retry_after: str | None = None) -> None:
        delay = min(8.0, 0.2 * 2**attempt) * (0.5 + random.random())
        if retry_after and retry_after.isdigit():
            delay = min(30.0, float(retry_after))
        self.sleep(delay)

    def _authenticate(self, response: httpx.Response, scope: str) -> bool:
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            if self.credentials is None:
                return False
            self.tokens["*"] = self.credentials.basic()
            return True
        realm = challenge.params.get("realm")
        if not realm:
            return False
        params = {"service": challenge.params.get("service", "")}
        params["scope"] = scope or challenge.params.get("scope", "")
        headers = {}
        realm_url = httpx.URL(realm)
        # Credentials go to the token service only over TLS (or on loopback).
        if self.credentials is not None and (
            realm_url.scheme == "https" or is_insecure(realm_url.netloc.decode())
        ):
            headers["Authorization"] = self.credentials.basic()
        try:
            answer = self.client.get(realm, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot reach the token service of {self.host}") from exc
        if answer.status_code != 200:
            raise RegistryError(
                f"the token service of {self.host} refused: HTTP {answer.status_code}",
                hint="check the credentials (CANON_REGISTRY_USERNAME/PASSWORD or docker login)",
            )
        try:
            body = answer.json()
            token = body.get("token") or body.get("access_token")
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token service of {self.host} sent no token")
        self.tokens[scope] = f"Bearer {token}"
        return True

    def _show(self, url: httpx.URL) -> str:
        return str(url.copy_with(query=None))  # upload URLs carry state in the query

    def _error(self, method: str, url: httpx.URL, response: httpx.Response) -> RegistryError:
        detail = ""
        try:
            errors = response.json().get("errors") or []
            if errors and isinstance(errors[0], dict):
                detail = f": {errors[0].get('code', '')} {errors[0].get('message', '')}".rstrip()
        except (ValueError, AttributeError):
            pass
        hint = None
        if response.status_code in (401, 403):
            hint = "log in: CANON_REGISTRY_USERNAME/PASSWORD or `docker login`"
        return RegistryError(
            f"{method} {self._show(url)}: HTTP {response.status_code}{detail}", hint=hint
        )

    # -- blobs ---------------------------------------------------------------

    def has_blob(self, repository: str, digest: Digest) -> bool:
        scope = f"repository:{repository}:pull"
        response = self.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scope=scope, ok=(200, 404)
        )
        return response.status_code == 200

    def push_blob(
        self,
        repository: str,
        descriptor: oci.Descriptor,
        open_blob: Callable[[str], IO[bytes]],
        *,
        chunk: int = CHUNK,
        monolithic_max: int = MONOLITHIC_MAX,
        mount_from: str | None = None,
    ) -> bool:
        """Upload a blob unless the registry has it; True when bytes were sent.

        With ``mount_from`` (another repository of this registry that has the
        blob, e.g. the base image's), the registry is first asked to mount it
        there (spec.md "Mounting a blob from another repository"): no bytes move."""
        if self.has_blob(repository, descriptor.digest):
            return False
        scope = f"repository:{repository}:pull,push"
        url = f"/v2/{repository}/blobs/uploads/"
        if mount_from is not None:
            scope += f" repository:{mount_from}:pull"
            url += f"?mount={descriptor.digest}&from={mount_from}"
        start = self.request("POST", url, scope=scope, ok=(201, 202))
        if start.status_code == 201:
            return False  # mounted
        location = start.request.url.join(start.headers["location"])
        with open_blob("rb") as f:
            if descriptor.size <= monolithic_max:
                data = f.read()
                self._finish(location, descriptor.digest, data, scope)
                self.bytes_uploaded += len(data)
                return True
            offset = 0
            while offset < descriptor.size:
                f.seek(offset)
                data = f.read(chunk)
                try:
                    answer = self.request(
                        "PATCH",
                        location,
                        scope=scope,
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Range": f"{offset}-{offset + len(data) - 1}",
                        },
                        content=data,
                        ok=(202,),
                    )
                except RegistryError:
                    offset, location = self._resume(location, scope)
                    continue
                location = answer.request.url.join(answer.headers.get("location", str(location)))
                offset += len(data)
                self.bytes_uploaded += len(data)
        self._finish(location, descriptor.digest, b"", scope)
        return True

    def _resume(self, location: httpx.URL, scope: str) -> tuple[int, httpx.URL]:
        """Where the registry got to: ``Range: 0-N`` of the upload session."""
        status = self.request("GET", location, scope=scope, ok=(204,))
        last = status.headers.get("range", "0--1").rsplit("-", 1)[-1]
        new = status.request.url.join(status.headers.get("location", str(location)))
        return int(last) + 1, new

    def _finish(self, location: httpx.URL, digest: Digest, data: bytes, scope: str) -> None:
        url = location.copy_merge_params({"digest": digest})
        headers = {"Content-Type": "application/octet-stream"}
        self.request("PUT", url, scope=scope, headers=headers, content=data, ok=(201,))

    def pull_blob(self, repository: str, descriptor: oci.Descriptor, layout: ImageLayout) -> None:
        """Fetch a blob into ``layout``, verified against its digest and size."""
        if layout.has_blob(descriptor.digest, descriptor.size):
            layout.verify(descriptor.digest, descriptor.size)
            return
        scope = f"repository:{repository}:pull"
        response = self.request(
            "GET", f"/v2/{repository}/blobs/{descriptor.digest}", scope=scope, stream=True
        )
        try:
            with layout.writer() as w:
                for chunk in response.iter_bytes(1 << 20):
                    w.write(chunk)
                    if w.size > descriptor.size:
                        break
                w.commit(descriptor.digest, descriptor.size)
        except IntegrityError as exc:
            raise RegistryError(
                f"blob {descriptor.digest} from {self.host}/{repository} does not match "
                f"its descriptor: {exc.message}",
                hint="the registry or a proxy served wrong bytes; nothing was kept",
            ) from exc
        finally:
            response.close()

    # -- manifests -------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, Digest]:
        """(bytes, media type, digest); verified when ``reference`` is a digest."""
        scope = f"repository:{repository}:pull"
        response = self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            scope=scope,
            headers={"Accept": ACCEPT},
        )
        data = response.content
        if len(data) > oci.MAX_DOCUMENT:
            raise RegistryError(f"manifest {reference} is too large ({len(data)} bytes)")
        digest = hash_bytes(data)
        if is_digest(reference) and digest != reference:
            raise RegistryError(
                f"manifest {reference} from {self.host}/{repository} hashes to {digest}",
                hint="the registry served different bytes than the digest names; nothing was kept",
            )
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return data, media_type or oci.media_type_of(data), digest

    def resolve(self, repository: str, tag: str) -> Digest | None:
        """The digest a tag points at now (HEAD), or None when the tag does not exist."""
        scope = f"repository:{repository}:pull"
        response = self.request(
            "HEAD",
            f"/v2/{repository}/manifests/{tag}",
            scope=scope,
            headers={"Accept": ACCEPT},
            ok=(200, 404),
        )
        if response.status_code == 404:
            return None
        value = response.headers.get("docker-content-digest")
        if value and is_digest(value):
            return Digest(value)
        return self.get_manifest(repository, tag)[2]

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> Digest:
        scope = f"repository:{repository}:pull,push"
        response = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            scope=scope,
            headers={"Content-Type": media_type},
            content=data,
            ok=(201,),
        )
        digest = hash_bytes(data)
        echoed = response.headers.get("docker-content-digest")
        if echoed and echoed != digest:
            raise RegistryError(f"the registry stored manifest {echoed}, not {digest}")
        return digest
