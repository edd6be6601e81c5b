"""The local target's router: a small HTTP reverse proxy on the deployment's port.

Clients keep their connections to the router, which never restarts during a rollout;
each request goes to a backend chosen from ``backends.json`` at that moment (re-read when
its mtime changes; round robin). Switching versions is an atomic rename of that file, so
a request is served entirely by the old or entirely by the new version. A backend that
refuses the connection or drops it before answering (shutting down after a switch, or
killed) is retried on the current list — predictions are pure, so the retry is safe; that
is what makes a rollout, and a rollback after the switch, lose no request (RELIABILITY.md
invariant 4). Timeouts are not retried.

Run as its own process:
    python -m canon.executors.deploy.router --backends FILE --host 127.0.0.1 --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 16 << 20  # the model server has its own (smaller) cap; this one bounds memory
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
    b"te",
    b"trailer",
    b"host",
    b"content-length",
}
ATTEMPTS = 40  # x 50 ms: a backend list being switched settles well within 2 s


class Backends:
    """The current backend URLs, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: int | None = None
        self._urls: list[str] = []
        self._cycle: itertools.cycle[str] | None = None

    def pick(self) -> str | None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return None
        if mtime != self._mtime:
            try:
                data = json.loads(self.path.read_bytes())
                urls = [str(u) for u in data.get("backends", [])]
            except (OSError, ValueError, AttributeError):
                return None
            self._mtime, self._urls = mtime, urls
            self._cycle = itertools.cycle(urls) if urls else None
        return next(self._cycle) if self._cycle else None


def create_router(backends_file: Path) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    backends = Backends(backends_file)
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(60.0, connect=2.0),
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                await _answer(send, 413, b'{"error": "body over the router\'s limit"}\n')
                return
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        path = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        for _ in range(ATTEMPTS):
            url = backends.pick()
            if url is None:
                await asyncio.sleep(0.05)
                continue
            try:
                response = await client.request(
                    scope["method"], url + path, content=bytes(body), headers=headers
                )
            except (httpx.NetworkError, httpx.RemoteProtocolError):
                # refused, reset or closed before answering (a backend shutting down or
                # killed mid-request): retry on the current list. Predictions are pure
                # functions of the request, so a retry is harmless; timeouts are not retried.
                await asyncio.sleep(0.05)
                continue
            except httpx.HTTPError as exc:
                await _answer(
                    send,
                    502,
                    json.dumps({"error": f"backend: {type(exc).__name__}: {exc}"}).encode(),
                )
                return
            out = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in response.headers.items()
                if k.lower().encode() not in HOP_BY_HOP
            ]
            out.append((b"content-length", str(len(response.content)).encode()))
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": out}
            )
            await send({"type": "http.response.body", "body": response.content})
            return
        await _answer(send, 503, b'{"error": "no model server is ready behind this port"}\n')

    return app


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="canon-router")
    parser.add_argument("--backends", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    uvicorn.run(
        create_router(args.backends),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
