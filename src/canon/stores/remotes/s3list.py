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
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

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


def light_lister(url: str, endpoint_url: str | None, region: str | None) -> S3Lister | None:
    """An ``S3Lister`` for an ``s3://`` remote when botocore is installed, else None
    (the caller then lists through the full backend)."""
    if scheme_of(url) not in ("s3", "s3a"):
        return None
    try:
        import botocore  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:  # pragma: no cover - botocore comes with the s3 extra
        return None
    return S3Lister(url, endpoint_url, region)


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
