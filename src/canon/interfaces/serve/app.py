"""The model server's routes. The model loads on a thread at startup, so ``/healthz``
answers at once and ``/readyz`` says 503 (with the reason) until the model is ready.

    POST /predict     {"inputs": X} -> {"predictions": Y}; {"instances": [...]} -> a list
    GET  /healthz     200 while the process serves
    GET  /readyz      200 when loaded + self-check passed, else 503 with the reason
    GET  /provenance  what this server runs, verified against the files' digests
    GET  /metrics     Prometheus text
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from canon.interfaces.serve.metrics import CONTENT_TYPE, Metrics
from canon.interfaces.serve.model import RejectedInput, ServedModel
from canon.interfaces.serve.requests import BadRequest, Limits, read_prediction

Endpoint = Callable[[Request], Awaitable[Response]]


def _json(status: int, body: Any) -> Response:
    return Response(
        json.dumps(body, allow_nan=False, sort_keys=True) + "\n",
        status_code=status,
        media_type="application/json",
    )


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


def create_app(model: ServedModel, limits: Limits | None = None) -> Starlette:
    limits = limits or Limits()
    metrics = Metrics()

    def timed(route: str, endpoint: Endpoint) -> Endpoint:
        async def wrapped(request: Request) -> Response:
            started = time.perf_counter()
            response = await endpoint(request)
            metrics.observe(route, response.status_code, time.perf_counter() - started)
            return response

        return wrapped

    async def predict(request: Request) -> Response:
        if not model.ready:
            metrics.error("/predict", "not_ready")
            return _error(503, f"model not ready: {model.reason}")
        try:
            prediction = await read_prediction(request, limits)
        except BadRequest as exc:
            metrics.error("/predict", "bad_request")
            return _error(exc.status, exc.message)
        try:
            answers = await run_in_threadpool(lambda: [model.predict(x) for x in prediction.inputs])
            body = {"predictions": answers if prediction.batch else answers[0]}
            return _json(200, body)
        except RejectedInput as exc:
            metrics.error("/predict", "rejected")
            return _error(422, f"the model rejected the input: {exc}")
        except Exception as exc:  # the handler's bug or an unserialisable answer
            metrics.error("/predict", "internal")
            return _error(500, f"prediction failed: {type(exc).__name__}")

    async def healthz(request: Request) -> Response:
        return _json(200, {"status": "alive"})

    async def readyz(request: Request) -> Response:
        body = {"state": model.state, "reason": model.reason, "self_check": model.self_check}
        return _json(200 if model.ready else 503, body)

    async def provenance(request: Request) -> Response:
        verified = model.ready and model.verified == model.bundle.files
        return _json(
            200,
            {
                "provenance": dict(model.bundle.provenance),
                "image": model.bundle.image_digest,
                "source": model.bundle.source,
                "verified": verified,
                "files": model.verified,
                "state": model.state,
                "reason": model.reason,
            },
        )

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(model.info(), model.ready), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threading.Thread(target=model.load, name="canon-model-load", daemon=True).start()
        yield

    routes = [
        Route("/predict", timed("/predict", predict), methods=["POST"]),
        Route("/healthz", timed("/healthz", healthz), methods=["GET"]),
        Route("/readyz", timed("/readyz", readyz), methods=["GET"]),
        Route("/provenance", timed("/provenance", provenance), methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
