"""The controller's HTTP face. Only ``POST /hooks/git`` changes anything — and all it
does is wake the loop; it needs a valid signature (see reconcile/webhook.py)."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from canon.reconcile.controller import Condition, Controller
from canon.reconcile.webhook import Deliveries, verify

MAX_HOOK_BODY = 1 << 20


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body, sort_keys=True) + "\n", status, media_type="application/json")


def create_app(controller: Controller, secret: bytes) -> Starlette:
    deliveries = Deliveries()
    counts = {"accepted": 0, "rejected": 0, "duplicate": 0}

    async def hook(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_HOOK_BODY:
                counts["rejected"] += 1
                return _json(413, {"error": "body too large"})
        if not verify(secret, bytes(body), request.headers.get("x-hub-signature-256")):
            counts["rejected"] += 1
            return _json(401, {"error": "bad or missing X-Hub-Signature-256"})
        if not deliveries.first_time(request.headers.get("x-github-delivery")):
            counts["duplicate"] += 1
            return _json(200, {"status": "duplicate delivery ignored"})
        counts["accepted"] += 1
        controller.wake.set()  # the payload only means "look at Git now"
        return _json(202, {"status": "reconcile requested"})

    def status_doc() -> dict[str, Any]:
        return {**controller.status.to_dict(), "webhooks": counts}

    async def healthz(request: Request) -> Response:
        return _json(200, {"status": "alive"})

    async def readyz(request: Request) -> Response:
        last = controller.status.last
        ready = last is not None and last.condition is Condition.READY
        return _json(200 if ready else 503, status_doc())

    async def status(request: Request) -> Response:
        return _json(200, status_doc())

    async def metrics(request: Request) -> Response:
        s = controller.status
        lines = ["# TYPE canon_controller_reconciles_total counter"]
        for condition in Condition:
            n = s.reconciles.get(condition.value, 0)
            lines.append(f'canon_controller_reconciles_total{{condition="{condition.value}"}} {n}')
        lines.append("# TYPE canon_controller_webhooks_total counter")
        for outcome, n in sorted(counts.items()):
            lines.append(f'canon_controller_webhooks_total{{outcome="{outcome}"}} {n}')
        lines.append("# TYPE canon_controller_ready gauge")
        ready = s.last is not None and s.last.condition is Condition.READY
        lines.append(f"canon_controller_ready {1 if ready else 0}")
        lines.append("# TYPE canon_controller_last_reconcile_timestamp_seconds gauge")
        lines.append(
            f"canon_controller_last_reconcile_timestamp_seconds {s.last.at if s.last else 0}"
        )
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    return Starlette(
        routes=[
            Route("/hooks/git", hook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/status", status, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )
