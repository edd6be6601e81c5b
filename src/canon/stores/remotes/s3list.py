"""Listing an S3 remote with plain botocore: what a no-op push needs, light.

A push lists the remote once and, if the local record says everything was
there at that very listing, stops (``Catalog``). Opening the full backend
(s3fs: aiobotocore, aiohttp) for that one listing costs ~0.5 s of imports; a
synchronous botocore client lists the same keys for a fraction of it.

The listing is exactly ``FsspecRemote.list``'s (same keys, sizes and
modification times; the conformance suite checks both): the same credential
chain (botocore's own: environment, ``~/.aws``, an instance role), the same
endpoint and region, botocore's retries off (canon's bounded, jittered ones
apply: ``retry.call``), and errors classified as the backend classifies them
(a missing bucket is ``KeyMissingError``, a refusal names the credentials,
connection failures and 5xx are retried, then ``RemoteUnavailableError``).

Lighter still, when the environment holds the whole configuration (keys in
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, no profile, config file or
proxy; an endpoint, or a region for AWS itself), a ``SignedLister`` sends the
ListObjectsV2 requests itself over ``http.client``, signed with Signature V4
(checked against botocore's signer in the tests): no botocore import at all.
Any answer it does not expect (a redirect, a refusal, a bad request) hands
the listing to botocore, whose behaviour and errors are then the answer.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import importlib.util
import os
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

from canon.errors import RemoteError
from canon.stores.remotes.cloud import classify
from canon.stores.remotes.protocol import RemoteFile
from canon.stores.remotes.retry import call, scrub
from canon.urls import scheme_of

_DENIED = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "403",
    }
)


def light_lister(
    url: str, endpoint_url: str | None, region: str | None
) -> S3Lister | SignedLister | None:
    """The lightest lister for an ``s3://`` remote: a ``SignedLister`` when the
    environment says everything, else an ``S3Lister`` when botocore is installed,
    else None (the caller then lists through the full backend)."""
    if scheme_of(url) not in ("s3", "s3a"):
        return None
    if importlib.util.find_spec("botocore") is None:  # pragma: no cover - the s3 extra has it
        return None
    fallback = S3Lister(url, endpoint_url, region)
    target = _signed_target(fallback.bucket, endpoint_url, region, os.environ)
    if target is None:
        return fallback
    return SignedLister(fallback, *target)


class S3Lister:
    """``list(prefix)`` of the remote at ``url`` (``s3://bucket/base``)."""

    def __init__(
        self, url: str, endpoint_url: str | None, region: str | None, *, page_size: int = 1000
    ) -> None:
        self.page_size = page_size
        rest = url.split("://", 1)[1].strip("/")
        self.bucket, _, base = rest.partition("/")
        self.base = f"{base}/" if base else ""
        self.where = url if endpoint_url is None else f"{url} (endpoint {endpoint_url})"
        self._endpoint = endpoint_url
        self._region = region
        self._client: Any = None
        self._guard = threading.Lock()

    def _s3(self) -> Any:
        with self._guard:
            if self._client is None:
                import botocore.session  # type: ignore[import-untyped]
                from botocore.config import Config  # type: ignore[import-untyped]

                config = Config(
                    retries={"max_attempts": 1, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                )
                session = botocore.session.get_session()
                self._client = session.create_client(
                    "s3", endpoint_url=self._endpoint, region_name=self._region, config=config
                )
            return self._client

    def list(self, prefix: str, *, where: str) -> Mapping[str, RemoteFile]:
        return call(f"LIST {prefix}", lambda: self._list(prefix), classify, where=where)

    def _list(self, prefix: str) -> dict[str, RemoteFile]:
        from botocore.exceptions import (  # type: ignore[import-untyped]
            ClientError,
            NoCredentialsError,
        )

        out: dict[str, RemoteFile] = {}
        cut = len(self.base)
        try:
            pages = self._s3().get_paginator("list_objects_v2")
            for page in pages.paginate(
                Bucket=self.bucket,
                Prefix=self.base + prefix,
                PaginationConfig={"PageSize": self.page_size},
            ):
                for item in page.get("Contents", ()):
                    key = str(item["Key"])
                    if key.endswith("/") or not key.startswith(self.base):
                        continue  # a "directory" marker some tools write
                    modified = item.get("LastModified")
                    mtime = modified.timestamp() if modified is not None else 0.0
                    out[key[cut:]] = RemoteFile(int(item.get("Size") or 0), mtime)
        except NoCredentialsError as exc:
            raise PermissionError(str(exc)) from exc
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            text = scrub(f"{code}: {error.get('Message', '')}")
            if code == "NoSuchBucket":
                raise FileNotFoundError(f"bucket {self.bucket} does not exist ({text})") from exc
            if code in _DENIED or status == 403:
                raise PermissionError(text) from exc
            if status and status < 500 and status != 429:
                raise RemoteError(f"remote {self.where} refused LIST {prefix}: {text}") from exc
            raise OSError(text) from exc  # 5xx, throttling: retried
        return out


# -- a signed ListObjectsV2 without botocore -------------------------------------------

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
# Settings only botocore understands: with any of them set, botocore lists.
_BOTOCORE_ONLY = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
)


def _signed_target(
    bucket: str, endpoint_url: str | None, region: str | None, env: Mapping[str, str]
) -> tuple[str, str, str, str, str | None] | None:
    """(base URL, path to the bucket, region, access key, secret, token) for a
    ``SignedLister``, or None when the environment does not say everything."""
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret or any(env.get(v) for v in _BOTOCORE_ONLY):
        return None
    if os.path.exists(os.path.expanduser("~/.aws")):
        return None  # config or credentials files: botocore reads them
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    endpoint = endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
            return None
        base = f"{parts.scheme}://{parts.netloc}"
        path = "/" + quote(bucket, safe="")  # path-style, as S3-compatible servers expect
        region = region or "us-east-1"
    else:
        if not region or not _dns_safe(bucket):
            return None
        base, path = f"https://{bucket}.s3.{region}.amazonaws.com", "/"
    token = env.get("AWS_SESSION_TOKEN") or None
    return base + "\0" + path, region, key, secret, token


def _dns_safe(bucket: str) -> bool:
    return (
        3 <= len(bucket) <= 63
        and all(c.islower() or c.isdigit() or c == "-" for c in bucket)
        and bucket[0].isalnum()
        and bucket[-1].isalnum()
    )


def sign_v4(
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    *,
    region: str,
    key: str,
    secret: str,
    token: str | None,
    when: datetime.datetime,
) -> dict[str, str]:
    """The headers that sign an S3 request with an empty body (Signature V4)."""
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    headers = {"host": host, "x-amz-content-sha256": _EMPTY_SHA256, "x-amz-date": stamp}
    if token:
        headers["x-amz-security-token"] = token
    names = sorted(headers)
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
    )
    canonical = "\n".join(
        [
            method,
            quote(path, safe="/-_.~%"),
            canonical_query,
            "".join(f"{n}:{headers[n].strip()}\n" for n in names),
            ";".join(names),
            _EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    k = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


class _Unexpected(Exception):
    """An answer the signed lister does not handle: botocore lists instead."""


class SignedLister:
    """ListObjectsV2 over ``http.client``, signed here (see the module docstring)."""

    def __init__(
        self,
        fallback: S3Lister,
        target: str,
        region: str,
        key: str,
        secret: str,
        token: str | None,
    ) -> None:
        self.fallback = fallback
        base, self._path = target.split("\0", 1)
        parts = urlsplit(base)
        self._https = parts.scheme == "https"
        self._host = parts.netloc
        self._region, self._key, self._secret, self._token = region, key, secret, token
        self._local = threading.local()
        self._use_botocore = False

    @property
    def page_size(self) -> int:
        return self.fallback.page_size

    def list(self, prefix: str, *, where: str) -> Mapping[str, RemoteFile]:
        if not self._use_botocore:
            try:
                return call(f"LIST {prefix}", lambda: self._list(prefix), classify, where=where)
            except _Unexpected:
                self._use_botocore = True
        return self.fallback.list(prefix, where=where)

    def _connection(self) -> Any:
        import http.client

        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                import ssl

                context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE"))
                conn = http.client.HTTPSConnection(self._host, timeout=60, context=context)
            else:
                conn = http.client.HTTPConnection(self._host, timeout=60)
            self._local.conn = conn
        return conn

    def _get(self, query: dict[str, str]) -> tuple[int, bytes]:
        headers = sign_v4(
            "GET",
            self._host,
            self._path,
            query,
            region=self._region,
            key=self._key,
            secret=self._secret,
            token=self._token,
            when=datetime.datetime.now(datetime.UTC),
        )
        target = (
            self._path
            + "?"
            + "&".join(
                f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
            )
        )
        conn = self._connection()
        try:
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except BaseException:
            conn.close()
            self._local.conn = None
            raise

    def _list(self, prefix: str) -> dict[str, RemoteFile]:
        import xml.etree.ElementTree as ET

        base = self.fallback.base
        out: dict[str, RemoteFile] = {}
        token: str | None = None
        while True:
            query = {
                "list-type": "2",
                "prefix": base + prefix,
                "encoding-type": "url",
                "max-keys": str(self.page_size),
            }
            if token:
                query["continuation-token"] = token
            status, body = self._get(query)
            if status == 404 and b"<Code>NoSuchBucket</Code>" in body:
                raise FileNotFoundError(f"bucket {self.fallback.bucket} does not exist")
            if status >= 500 or status == 429:
                raise OSError(f"HTTP {status} listing {prefix}")  # retried
            if status != 200:
                raise _Unexpected(status)
            try:
                root = ET.fromstring(body)
            except ET.ParseError as exc:
                raise OSError(f"unreadable listing of {prefix}") from exc
            for item in root.iter(f"{_NS}Contents"):
                key = unquote_plus(item.findtext(f"{_NS}Key") or "")
                if key.endswith("/") or not key.startswith(base):
                    continue
                size = int(item.findtext(f"{_NS}Size") or 0)
                out[key[len(base) :]] = RemoteFile(
                    size, _timestamp(item.findtext(f"{_NS}LastModified"))
                )
            token = root.findtext(f"{_NS}NextContinuationToken")
            if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
                return out


def _timestamp(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
