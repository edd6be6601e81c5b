"""``POST /hooks/git``: is this delivery genuine, and is it new?

GitHub signs the raw body with HMAC-SHA256 and sends ``X-Hub-Signature-256: sha256=<hex>``;
the comparison is constant-time (``hmac.compare_digest``). An empty secret is refused at
start (a webhook anyone can trigger is an open door, RELIABILITY.md). Deliveries are
de-duplicated by ``X-GitHub-Delivery`` (a bounded memory of recent ids). The payload is
never read for desired state: a genuine delivery only means "look at Git now".
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict

from canon.errors import CanonError

REMEMBERED = 1024


class WebhookSecretError(CanonError):
    code = "controller.webhook_secret"


def check_secret(secret: str | None) -> bytes:
    if not secret:
        raise WebhookSecretError(
            "the webhook secret is empty: refusing to start an unauthenticated endpoint",
            hint="set CANON_WEBHOOK_SECRET (the same secret as in the Git host's webhook)",
        )
    return secret.encode()


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.encode())


class Deliveries:
    """Recently seen delivery ids (thread-safe, bounded)."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def first_time(self, delivery: str | None) -> bool:
        if not delivery:
            return True  # no id: cannot de-duplicate; a reconcile is idempotent anyway
        with self._lock:
            if delivery in self._seen:
                return False
            self._seen[delivery] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True
