"""A remote reached through fsspec: S3 (s3fs) first, and any fsspec URL.

S3 specifics: ``endpoint_url`` and ``region`` go to the client through
``client_kwargs``; credentials never come from canon.yaml, only from what
botocore finds itself (environment, ``~/.aws``, an instance role). botocore's
and s3fs's own retries are switched off (``max_attempts: 1``, ``retries = 1``)
so that the one retry policy is canon's (bounded, jittered: ``retry.call``).

Atomicity comes from S3 itself: a PUT, or a multipart upload, becomes visible
only when complete. ``put_file`` lets s3fs upload big files in parallel parts;
``get_file`` streams in 1 MiB chunks (bounded memory for a 1 GiB object).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from canon.errors import RemoteConfigError, RemoteError
from canon.stores.remotes.protocol import KeyMissingError, RemoteFile, check_key
from canon.stores.remotes.retry import Transient, call, scrub
from canon.urls import redact, scheme_of

CHUNK = 1 << 20
_S3 = ("s3", "s3a")


class FsspecRemote:
    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        jobs: int = 8,
    ) -> None:
        self.url = url.rstrip("/")
        self._endpoint = endpoint_url
        scheme = scheme_of(url) or "file"
        try:
            import fsspec  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - fsspec comes with the s3 extra
            raise RemoteConfigError(
                f"remote {redact(url)} needs fsspec", hint=_install_hint(scheme)
            ) from exc
        options: dict[str, Any] = {"skip_instance_cache": True}
        if scheme in _S3:
            client: dict[str, Any] = {}
            if endpoint_url:
                client["endpoint_url"] = endpoint_url
            if region:
                client["region_name"] = region
            options.update(
                client_kwargs=client,
                config_kwargs={
                    "retries": {"max_attempts": 1, "mode": "standard"},
                    "connect_timeout": 5,
                    "read_timeout": 60,
                    "max_pool_connections": max(10, 2 * jobs),
                },
                use_listings_cache=False,
                max_concurrency=max(1, min(jobs, 16)),
            )
        try:
            self.fs = fsspec.filesystem(scheme, **options)
        except (ImportError, ValueError) as exc:
            raise RemoteConfigError(
                f"cannot open remote {redact(url)}: {scrub(str(exc))}",
                hint=_install_hint(scheme),
            ) from exc
        if hasattr(self.fs, "retries"):
            self.fs.retries = 1  # one policy: canon's (see module docstring)
        self.base = self.fs._strip_protocol(self.url).rstrip("/")

    @property
    def display(self) -> str:
        shown = redact(self.url)
        return f"{shown} (endpoint {redact(self._endpoint)})" if self._endpoint else shown

    def _path(self, key: str) -> str:
        return f"{self.base}/{check_key(key)}"

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        return call(what, fn, classify, where=self.display)

    def list(self, prefix: str) -> Mapping[str, RemoteFile]:
        top = f"{self.base}/{prefix}".rstrip("/")
        found: dict[str, Any] = self._call(f"LIST {prefix}", lambda: _find(self.fs, top))
        out: dict[str, RemoteFile] = {}
        cut = len(self.base) + 1
        for path, info in found.items():
            if info.get("type", "file") != "file":
                continue
            key = path[cut:] if path.startswith(self.base + "/") else path
            out[key] = RemoteFile(int(info.get("size") or 0), _mtime(info))
        return out

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        self._call(f"PUT {key}", lambda: self.fs.pipe_file(path, data))

    def put_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        self._call(f"PUT {key}", lambda: self.fs.put_file(str(path), dest))

    def get_bytes(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        path = self._path(key)
        data = self._call(f"GET {key}", lambda: self.fs.cat_file(path, start=start, end=end))
        return bytes(data)

    def get_file(self, key: str, sink: Callable[[bytes], None]) -> None:
        path = self._path(key)
        # Not retried as a whole: the sink has seen bytes. A failure is raised;
        # the caller drops its temp file and a rerun starts the object again.
        f = self._call(f"GET {key}", lambda: self.fs.open(path, "rb", block_size=8 * CHUNK))
        try:
            with f:
                while True:
                    chunk = self._call(f"GET {key}", lambda: f.read(CHUNK))
                    if not chunk:
                        break
                    sink(chunk)
        except RemoteError:
            raise
        except Exception as exc:
            verdict = classify(exc)
            if isinstance(verdict, RemoteError):
                raise verdict from None
            raise

    def delete(self, keys: Sequence[str]) -> None:
        paths = [self._path(k) for k in keys]
        for i in range(0, len(paths), 1000):  # S3 DeleteObjects takes at most 1000 keys
            batch = paths[i : i + 1000]
            self._call(f"DELETE {len(batch)} keys", lambda b=batch: _rm(self.fs, b))  # type: ignore[misc]


_PACKAGES = {"gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs"}


def _install_hint(scheme: str) -> str:
    """What to install for a remote of this scheme (s3 comes with canon's extra)."""
    package = _PACKAGES.get(scheme)
    if package is not None:
        return f"{scheme}:// remotes need the {package} package: pip install {package}"
    return "s3:// remotes need canon's s3 extra: pip install 'canon[s3]'"


def _find(fs: Any, top: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = fs.find(top, detail=True)
    except FileNotFoundError:
        if "/" in top and fs.exists(top.split("/", 1)[0]):
            return {}
        raise
    return found


def _rm(fs: Any, paths: list[str]) -> None:
    try:
        fs.rm(paths)
    except FileNotFoundError:  # some backends stop at the first missing key
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(p)


def _mtime(info: Mapping[str, Any]) -> float:
    value = info.get("LastModified") or info.get("mtime") or info.get("created")
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return 0.0


def classify(exc: BaseException) -> RemoteError | Transient | None:
    text = scrub(str(exc))[:300]
    if isinstance(exc, FileNotFoundError):
        return KeyMissingError(f"not on the remote: {text}")
    if isinstance(exc, PermissionError):
        return RemoteError(
            f"the remote refused access: {text}",
            hint="check the credentials in the environment (AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE) and the bucket's policy",
        )
    name = type(exc).__name__
    if isinstance(exc, ConnectionError | TimeoutError) or "Timeout" in name or "Connect" in name:
        return Transient(text)
    if isinstance(exc, OSError):  # s3fs turns 5xx, SlowDown, resets into OSError
        return Transient(text)
    module = type(exc).__module__
    if module.startswith(("botocore", "aiobotocore", "aiohttp", "urllib3")):
        return Transient(text)
    return None
