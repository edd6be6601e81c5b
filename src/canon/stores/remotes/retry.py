"""Bounded, jittered retries for remote calls, and secrets scrubbed from errors.

Every call canon makes to a remote is idempotent (content-addressed puts,
gets, listings, deletes of named keys), so each one may be retried on a
*transient* failure: connection refused or reset, a timeout, HTTP 5xx or 429.
Retries are bounded (``ATTEMPTS``) with exponential backoff and full jitter
(AWS architecture blog, "Exponential Backoff And Jitter"), so a remote that
is down costs a few seconds, not minutes, before ``RemoteUnavailableError``.
Steps that are not idempotent as a whole (pack, then index) are never retried
as a whole: each of their requests is.

Errors from backends are translated here (``raise RemoteError(...) from exc``)
and their text is scrubbed: any value of a credential variable in the
environment is replaced by ``***`` (RELIABILITY.md invariant 5).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

from canon.errors import RemoteError, RemoteUnavailableError

T = TypeVar("T")

ATTEMPTS = 4
BASE_DELAY = 0.1
MAX_DELAY = 2.0
_SECRET_VARS = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
)


class Transient(Exception):
    """Raised by a backend's classifier: this failure may go away if retried."""


def scrub(text: str) -> str:
    """``text`` with every credential value from the environment replaced by ``***``."""
    for var in _SECRET_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def call(
    what: str,
    fn: Callable[[], T],
    classify: Callable[[BaseException], RemoteError | Transient | None],
    *,
    where: str,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``, retried on transient failures. ``classify(exc)`` says what an
    exception means: a ``Transient`` (retry), a ``RemoteError`` (raise it now) or
    ``None`` (not a remote failure: let it through)."""
    last: BaseException | None = None
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            verdict = classify(exc)
            if verdict is None:
                raise
            if isinstance(verdict, RemoteError):
                verdict.message = scrub(verdict.message)
                raise verdict from None
            last = exc
        if attempt + 1 < attempts:
            sleep(random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt)))
    detail = scrub(f"{type(last).__name__}: {last}")[:300] if last else ""
    raise RemoteUnavailableError(
        f"remote {where} did not answer {what} after {attempts} attempts ({detail})",
        hint="check that the remote is reachable (endpoint_url, network) and try again; "
        "a rerun only transfers what is still missing",
    ) from None
