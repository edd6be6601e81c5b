"""A prediction request, parsed under limits: everything wrong is a ``BadRequest`` with
the status and a message, before the model sees it.

    {"inputs": X}              one prediction: the handler gets X
    {"instances": [X1, X2]}    a batch: the handler gets each Xi, the answer is a list

Limits (RELIABILITY.md, Serving): content type ``application/json`` (415), body size
(413, checked on Content-Length and again while reading), nesting depth and batch size
(422), JSON syntax and the non-JSON constants NaN/Infinity (400).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

MAX_BODY = 1 << 20  # 1 MiB
MAX_DEPTH = 32
MAX_BATCH = 1024


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_body: int = MAX_BODY
    max_depth: int = MAX_DEPTH
    max_batch: int = MAX_BATCH


@dataclass(frozen=True)
class Prediction:
    inputs: list[Any]  # one element when not a batch
    batch: bool


async def read_prediction(request: Request, limits: Limits) -> Prediction:
    content_type = request.headers.get("content-type", "")
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "application/json":
        raise BadRequest(415, f"content type must be application/json, got {content_type!r}")
    charset = params.strip().lower().removeprefix("charset=").strip('"')
    if params.strip() and charset not in {"utf-8", "utf8"}:
        raise BadRequest(415, f"only UTF-8 JSON is accepted, got {params.strip()!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body:
        raise BadRequest(413, f"body is {declared} bytes, the limit is {limits.max_body}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.max_body:
            raise BadRequest(413, f"body is over the limit of {limits.max_body} bytes")
    return parse(bytes(body), limits)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse(body: bytes, limits: Limits) -> Prediction:
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except RecursionError as exc:
        raise BadRequest(422, f"JSON nested deeper than {limits.max_depth} levels") from exc
    except ValueError as exc:
        raise BadRequest(400, f"invalid JSON: {exc}") from exc
    if depth(document) > limits.max_depth:
        raise BadRequest(422, f"JSON nested deeper than {limits.max_depth} levels")
    if not isinstance(document, dict) or len(document.keys() & {"inputs", "instances"}) != 1:
        raise BadRequest(
            422, 'expected {"inputs": ...} for one prediction or {"instances": [...]} for a batch'
        )
    extra = sorted(set(document) - {"inputs", "instances"})
    if extra:
        raise BadRequest(422, f"unknown field(s): {', '.join(extra)}")
    if "inputs" in document:
        return Prediction([document["inputs"]], batch=False)
    instances = document["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest(422, '"instances" must be a non-empty list')
    if len(instances) > limits.max_batch:
        raise BadRequest(
            422, f"batch of {len(instances)} instances, the limit is {limits.max_batch}"
        )
    return Prediction(instances, batch=True)


def depth(value: Any) -> int:
    """Nesting depth, without recursion (a hostile body must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest
