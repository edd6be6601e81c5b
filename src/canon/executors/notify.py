"""Outbound notifications: Slack-compatible JSON webhooks on rollout outcomes.

Configured per profile with the *name* of an environment variable that holds the webhook
URL (``profiles: {prod: {notify: CANON_SLACK_WEBHOOK}}``): the URL is a secret, so it never
enters canon.yaml, the lock, the ledger or a log line. Delivery is best effort — bounded
timeout, one retry on a 5xx or a network error — and never fails a rollout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

TIMEOUT = 5.0


@dataclass(frozen=True)
class Message:
    event: str  # rollout_succeeded | rollout_failed | rolled_back | drift_healed
    environment: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        # "text" is what Slack, Mattermost, Rocket.Chat and Teams' incoming webhooks show
        return {
            "text": self.text,
            "canon": {"event": self.event, "environment": self.environment, **self.fields},
        }


class Notifier(Protocol):
    def send(self, message: Message) -> str | None:
        """None when delivered; else why not (never raises)."""
        ...


@dataclass
class WebhookNotifier:
    url: str

    def send(self, message: Message) -> str | None:
        problem = "not sent"
        for attempt in range(2):
            try:
                answer = httpx.post(self.url, json=message.payload(), timeout=TIMEOUT)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}"  # never the URL: it is a secret
            else:
                if answer.status_code < 300:
                    return None
                problem = f"HTTP {answer.status_code}"
                if answer.status_code < 500:
                    return problem
            if attempt == 0:
                time.sleep(0.5)
        return problem


@dataclass
class FakeNotifier:
    sent: list[Message] = field(default_factory=list)

    def send(self, message: Message) -> str | None:
        self.sent.append(message)
        return None
