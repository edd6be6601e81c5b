"""Read-only access to a dataset's URL source through fsspec: one listing pass.

``list_source(spec)`` answers "what does the source hold now?" as a
``Listing``: every file's relative path, size and version token (S3 ETag, GCS
generation, mtime…), from one recursive listing (S3: ``ListObjectsV2``
pages of 1,000 keys; no per-object request). Comparing it with the pinned
``SourceIndex`` is how drift is reported without downloading anything.

Credentials are never passed by canon: the backend finds them in the
environment or its standard configuration (``AWS_*``, ``~/.aws``,
``AWS_ENDPOINT_URL`` for an S3-compatible store). Every error is translated
here into a ``DataError`` naming the dataset, with the URL redacted; transient
failures (connection refused, timeouts, 5xx) are retried a bounded number of
times with jittered backoff, and only for these idempotent reads.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from canon.declare.project import DatasetSpec
from canon.errors import DataError, SourceMissingError, SourceUnavailableError
from canon.stores.sourceindex import IndexEntry, SourceIndex
from canon.urls import DATA_SCHEMES, redact, scheme_of

__all__ = ["ATTEMPTS", "Listing", "list_source", "open_source", "retrying"]

ATTEMPTS = 3
_BACKOFF_S = 0.3
# Network defaults for S3 (overridable with storage_options.config_kwargs):
# a dead endpoint must fail in seconds, not minutes of botocore retries.
_S3_CONFIG = {
    "connect_timeout": 5,
    "read_timeout": 60,
    "retries": {"max_attempts": 2, "mode": "standard"},
}
# Keys of fsspec's info() that say which version of a file it is, best first.
_VERSION_KEYS = (
    "ETag",
    "etag",
    "generation",
    "md5Hash",
    "content_md5",
    "mtime",
    "LastModified",
    "last_modified",
    "created",
)

T = TypeVar("T")


@dataclass(frozen=True)
class Listing:
    """What a URL source holds now: its files relative to ``root``. ``single``:
    the source is one file (its only entry is its basename)."""

    fs: Any  # an fsspec AbstractFileSystem
    root: str  # the source's path as the filesystem spells it (bucket/prefix)
    index: SourceIndex
    single: bool

    def full(self, rel: str) -> str:
        return self.root if self.single else f"{self.root.rstrip('/')}/{rel}"


def open_source(spec: DatasetSpec) -> tuple[Any, str]:
    """The fsspec filesystem and root path of ``spec``'s URL (no network yet)."""
    url = spec.source
    scheme = scheme_of(url) or "file"
    options: dict[str, Any] = {k: v for k, v in spec.storage_options}
    options.setdefault("skip_instance_cache", True)
    options.setdefault("use_listings_cache", False)
    if scheme in ("s3", "s3a"):
        options["config_kwargs"] = {**_S3_CONFIG, **options.get("config_kwargs", {})}
    try:
        import fsspec  # type: ignore[import-untyped]

        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        package = DATA_SCHEMES.get(scheme, scheme)
        extra = " (pip install 'canon[s3]')" if package == "s3fs" else ""
        raise DataError(
            f"data.{spec.name}: reading {scheme}:// needs the {package} package",
            hint=f"install it: pip install {package}{extra}",
        ) from exc
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"data.{spec.name}: cannot open {redact(url)}: {_safe(exc)}",
            hint="check the source URL and storage_options in canon.yaml",
        ) from exc
    return fs, root


def list_source(spec: DatasetSpec) -> Listing:
    """One listing pass over ``spec``'s URL source (see the module docstring)."""
    fs, root = open_source(spec)

    def walk() -> dict[str, Mapping[str, Any]]:
        found: dict[str, Mapping[str, Any]] = fs.find(root, detail=True, withdirs=False)
        return found

    found = retrying(spec, "list", walk)
    files = {p: i for p, i in found.items() if i.get("type", "file") == "file"}
    top = root.rstrip("/")
    if not files or set(files) == {top}:
        info = retrying(spec, "read", lambda: fs.info(root))
        if info.get("type") != "file":
            raise SourceMissingError(
                f"data.{spec.name}: {redact(spec.source)} holds no files",
                hint="check the URL, or remove the dataset from canon.yaml",
            )
        base = top.rsplit("/", 1)[-1]
        entry = IndexEntry(base, int(info.get("size") or 0), _version(info))
        return Listing(fs, root, SourceIndex.build([entry]), single=True)
    entries = []
    cut = len(top) + 1
    for path, info in files.items():
        rel = path[cut:] if path.startswith(top + "/") else path.rsplit("/", 1)[-1]
        if not rel or rel.endswith("/"):
            continue  # a "directory marker" object
        entries.append(IndexEntry(rel, int(info.get("size") or 0), _version(info)))
    return Listing(fs, root, SourceIndex.build(entries), single=False)


def _version(info: Mapping[str, Any]) -> str:
    for key in _VERSION_KEYS:
        value = info.get(key)
        if value not in (None, ""):
            if isinstance(value, float):
                return str(int(value * 1e9))
            if hasattr(value, "isoformat"):
                return str(value.isoformat())
            return str(value)
    return f"size-{info.get('size')}"


def retrying(spec: DatasetSpec, what: str, fn: Callable[[], T]) -> T:
    """``fn()``, retried on transient errors (bounded, jittered); errors translated."""
    last: BaseException | None = None
    for attempt in range(ATTEMPTS):
        try:
            return fn()
        except FileNotFoundError as exc:
            raise SourceMissingError(
                f"data.{spec.name}: {redact(spec.source)} does not exist ({_safe(exc)})",
                hint="the source vanished or moved: fix the URL, or keep using the pin "
                "(it is in the cache or on a remote)",
            ) from exc
        except PermissionError as exc:
            raise SourceUnavailableError(
                f"data.{spec.name}: access to {redact(spec.source)} was refused",
                hint="check the credentials in the environment (AWS_PROFILE, AWS_ACCESS_KEY_ID…)",
            ) from exc
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise SourceUnavailableError(
                f"data.{spec.name}: cannot {what} {redact(spec.source)}: {_safe(exc)}"
            ) from exc
        except Exception as exc:  # network, 5xx, timeouts: transient until proven otherwise
            last = exc
            if attempt + 1 < ATTEMPTS:
                time.sleep(_BACKOFF_S * (2**attempt) * (0.5 + random.random()))
    raise SourceUnavailableError(
        f"data.{spec.name}: cannot {what} {redact(spec.source)} after {ATTEMPTS} attempts: "
        f"{_safe(last)}",
        hint="the source is down, refusing or too slow; try again later "
        "(stages can still run on the pinned content)",
    ) from last


def _safe(exc: BaseException | None) -> str:
    """An exception's text, redacted and bounded (messages can quote URLs)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    words = [redact(w) if "://" in w else w for w in text.split(" ")]
    out = " ".join(words)
    return out if len(out) <= 300 else out[:297] + "..."
