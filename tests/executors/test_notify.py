"""Notifications: a real HTTP receiver on 127.0.0.1 gets Slack-compatible JSON for each
rollout outcome; the URL comes from the environment variable the profile names."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from canon.apply.deployments import roll_out
from canon.digest import Digest
from canon.events import Event
from canon.executors.deploy.fake import FakeDeployer
from canon.executors.notify import Message, WebhookNotifier
from canon.stores.lockfile import write_lock
from canon.stores.records import ImageRecord, Lock, ProfileState

V1, V2 = "sha256:" + "11" * 32, "sha256:" + "22" * 32


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(503)
                else:
                    receiver.bodies.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/SECRET-TOKEN"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_webhook_notifier_retries_a_5xx_once(receiver: Receiver) -> None:
    receiver.fail_next = 1
    assert WebhookNotifier(receiver.url).send(Message("rollout_succeeded", "local", "hi")) is None
    assert receiver.bodies == [
        {"text": "hi", "canon": {"event": "rollout_succeeded", "environment": "local"}}
    ]
    receiver.fail_next = 2
    problem = WebhookNotifier(receiver.url).send(Message("x", "local", "hi"))
    assert problem == "HTTP 503" and "SECRET" not in problem


def test_rollouts_notify_the_profiles_webhook(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "canon.yaml").write_text(
        "project: p\n"
        "artifacts:\n  base: {kind: base}\n"
        "  model: {kind: model, from: base, add: [m.json], serve: {handler: 'm.s:predict'}}\n"
        "deployments:\n  local: {target: local, artifact: model}\n"
        "default_profile: local\n"
        "profiles:\n  local: {notify: CANON_TEST_HOOK}\n"
    )

    def pin(digest: str) -> None:
        record = ImageRecord(Digest(digest), Digest(digest), "c0ffee" * 6)
        write_lock(tmp_path, Lock({"local": ProfileState(images={"model": record})}))

    events: list[Event] = []
    fake = FakeDeployer()
    pin(V1)
    roll_out(tmp_path, profile=None, emit=events.append, deployers={"local": fake})
    assert any("CANON_TEST_HOOK is not set" in getattr(e, "message", "") for e in events)
    assert receiver.bodies == []

    monkeypatch.setenv("CANON_TEST_HOOK", receiver.url)
    pin(V2)
    roll_out(tmp_path, profile=None, emit=events.append, deployers={"local": fake})
    fake.broken.add(V1)
    pin(V1)
    roll_out(tmp_path, profile=None, emit=events.append, deployers={"local": fake})
    fake.died.add("local")
    pin(V2)
    roll_out(tmp_path, profile=None, emit=events.append, deployers={"local": fake})
    roll_out(tmp_path, profile=None, emit=events.append, deployers={"local": fake})  # unchanged
    got = [(b["canon"]["event"], b["canon"]["digest"]) for b in receiver.bodies]
    assert got == [("rollout_succeeded", V2), ("rolled_back", V1), ("drift_healed", V2)]
    assert receiver.bodies[0]["text"].startswith("canon: p/local rolled out: model sha256:2222")
    assert all(receiver.url not in json.dumps(e.to_dict()) for e in events)
