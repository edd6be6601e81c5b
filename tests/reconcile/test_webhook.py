"""Webhook signatures and delivery de-duplication; backoff and jitter."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from canon.reconcile.controller import Condition, Controller, Options, Result
from canon.reconcile.webhook import Deliveries, WebhookSecretError, check_secret, sign, verify


def test_signatures() -> None:
    secret = check_secret("s3cret")
    body = b'{"ref": "refs/heads/main"}'
    good = sign(secret, body)
    assert good.startswith("sha256=") and verify(secret, body, good)
    assert not verify(secret, body + b" ", good)
    assert not verify(b"other", body, good)
    assert not verify(secret, body, None)
    assert not verify(secret, body, good.replace("sha256=", "sha1="))
    with pytest.raises(WebhookSecretError, match="webhook secret is empty"):
        check_secret("")


def test_deliveries_are_deduplicated_and_bounded() -> None:
    seen = Deliveries(size=2)
    assert seen.first_time("a") and not seen.first_time("a")
    assert seen.first_time("b") and seen.first_time("c")
    assert seen.first_time("a")  # forgotten after two newer ones
    assert seen.first_time(None) and seen.first_time(None)


def test_backoff_grows_capped_and_interval_has_jitter(tmp_path: Path) -> None:
    c = Controller(tmp_path, Options(interval=60, backoff_start=2, backoff_max=10), lambda e: None)
    rng = random.Random(7)
    ready = Result(Condition.READY, "ok", "", None)
    waits = {round(c.next_wait(ready, rng)) for _ in range(50)}
    assert min(waits) >= 54 and max(waits) <= 66 and len(waits) > 3
    retry = Result(Condition.RETRY, "GitFetchFailed", "", None)
    got = []
    for n in range(1, 6):
        c.status.failures_in_a_row = n
        got.append(c.next_wait(retry, random.Random(0)))
    assert got[0] < got[1] < got[2] and got[4] <= 12  # 2, 4, 8, then capped at 10 (+-20 %)
