"""Session-wide real components for tests (COMPONENTS.md).

``s3``: a real S3-protocol server (moto's, in a thread of this process) on
127.0.0.1 and a free port, started once per session and stopped at the end.
It speaks the real S3 HTTP API to every client (s3fs, boto3, awscli, a
``canon`` subprocess). Two test hooks sit in front of it as WSGI middleware:

- ``s3.log``: every request seen, as ``(method, path)`` (to count PUTs);
- ``s3.fail_next(n, status=503, method=None, contains=None)``: answer the next
  ``n`` matching requests with an error instead of passing them on.

Credentials are fake and come from environment variables, set for the whole
session (and restored afterwards); ``s3.env`` holds them for subprocesses.
Use ``s3.new_bucket()`` for a bucket of your own.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE0000",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class _Fault:
    remaining: int
    status: int
    method: str | None
    contains: str | None


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str]
    log: list[tuple[str, str]] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _names: Iterator[int] = field(default_factory=itertools.count)

    def new_bucket(self, prefix: str = "canon-test") -> str:
        import boto3

        name = f"{prefix}-{os.getpid()}-{next(self._names)}"
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(
            Bucket=name
        )
        return name

    def fail_next(
        self, n: int, *, status: int = 503, method: str | None = None, contains: str | None = None
    ) -> None:
        with self._guard:
            self._faults.append(_Fault(n, status, method, contains))

    def clear_faults(self) -> None:
        with self._guard:
            self._faults.clear()

    def requests(self, method: str, contains: str = "") -> int:
        with self._guard:
            return sum(1 for m, p in self.log if m == method and contains in p)

    def _fault_for(self, method: str, path: str) -> int | None:
        with self._guard:
            for f in self._faults:
                if f.remaining > 0 and f.method in (None, method) and (
                    f.contains is None or f.contains in path
                ):
                    f.remaining -= 1
                    return f.status
        return None

    def wrap(self, app: WsgiApp) -> WsgiApp:
        def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            method = str(environ.get("REQUEST_METHOD", ""))
            path = str(environ.get("PATH_INFO", "")) + "?" + str(environ.get("QUERY_STRING", ""))
            with self._guard:
                self.log.append((method, path))
            status = self._fault_for(method, path)
            if status is not None:
                body = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
                start_response(f"{status} Injected", [("Content-Type", "application/xml"),
                                                      ("Content-Length", str(len(body)))])
                return [body]
            return app(environ, start_response)

        return middleware


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1:<free port> for the whole session."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    holder: dict[str, S3Server] = {}

    class LoggingMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            self._server = make_server(
                self._ip_address, self._port, holder["s3"].wrap(app), True
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    saved = {k: os.environ.get(k) for k in FAKE_ENV}
    os.environ.update(FAKE_ENV)
    server = LoggingMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    holder["s3"] = S3Server(endpoint="", env=dict(FAKE_ENV))
    server.start()
    host, port = server.get_host_and_port()
    holder["s3"].endpoint = f"http://{host}:{port}"
    try:
        yield holder["s3"]
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
