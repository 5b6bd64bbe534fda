"""ASGI middleware in front of BentoML: /classify's one request path, and what BentoML cannot do.

POST /classify is answered here, by the same call the `@bentoml.api` method makes
(`Runtime.classify`: the greedy batcher, the prediction log, the contract answer). Routing it
through BentoML's route instead cost a third of the peak requests/s (docs/service.md, "One
request path"). Each other part, and why it is here rather than in BentoML:
- header count and size (431): BentoML has no header limit (the byte cap before parsing is in
  service/http_guard.py);
- Content-Type, body size and a body deadline, then the texts' limits, all as the JSON error
  contract: BentoML reads any body whole, without a deadline, and answers its own error shapes;
- the concurrency limit (429 + Retry-After), taken only after the body is read and valid:
  BentoML's `traffic.max_concurrency` counts from the first byte, so slow senders would hold it;
- X-Request-Id on every answer, including the refusals above and BentoML's own routes;
- the SIGTERM drain (service/drain.py): BentoML stops answering on SIGTERM;
- the request count and latency metrics by route and status, over every answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Any

from service import runtime as runtime_state
from service.drain import STATE as DRAIN
from service.metrics import service_metrics
from service.validation import InputError, check_content_type, parse_classify_body

logger = logging.getLogger(__name__)

CLASSIFY_PATH = "/classify"
KNOWN_ROUTES = {"/classify": "classify", "/livez": "livez", "/readyz": "readyz",
                   "/metrics": "metrics"}
SHUTTING_DOWN = InputError(503, "shutting_down", "this instance is shutting down; retry",
                           "service")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-Id when it is sane, otherwise a fresh one."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class ModerationGateway:
    """Pure ASGI middleware; options come from the service settings."""

    def __init__(self, app: Any, max_chars: int, max_texts: int, max_body_bytes: int,
                 max_concurrency: int, retry_after_s: int, body_timeout_s: float = 10.0,
                 max_header_bytes: int = 16384, max_headers: int = 100) -> None:
        self.app = app
        self.max_chars, self.max_texts = max_chars, max_texts
        self.max_body_bytes = max_body_bytes
        self.max_concurrency = max_concurrency
        self.retry_after = str(retry_after_s)
        self.body_timeout_s = body_timeout_s
        self.max_header_bytes, self.max_headers = max_header_bytes, max_headers
        self.in_flight = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope.get("headers", []))
        route = KNOWN_ROUTES.get(scope["path"].rstrip("/") or "/", "other")
        status_box = {"code": 500}

        async def send_with_ids(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_box["code"] = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                if DRAIN.draining and not any(k.lower() == b"connection" for k, _ in headers):
                    # clients should make their next request to another instance
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            await send(message)

        try:
            headers_error = self.check_headers(scope.get("headers", []))
            if headers_error is not None:
                await self.refuse(send_with_ids, headers_error)
            elif DRAIN.draining and route in ("classify", "readyz"):
                await self.refuse(send_with_ids, SHUTTING_DOWN, retry=True)
            elif route == "classify" and scope["method"] == "POST":
                DRAIN.active += 1
                try:
                    await self.classify_guarded(scope, receive, send_with_ids, request_id,
                                                started)
                finally:
                    DRAIN.active -= 1
            else:
                await self.app(scope, receive, send_with_ids)
        finally:
            metrics = service_metrics()
            metrics.requests.labels(route=route, code=str(status_box["code"])).inc()
            metrics.duration.labels(route=route).observe(time.perf_counter() - started)

    def check_headers(self, headers: list[tuple[bytes, bytes]]) -> InputError | None:
        """A 431 when the request carries too many or too large headers."""
        size = sum(len(k) + len(v) + 4 for k, v in headers)
        if len(headers) > self.max_headers or size > self.max_header_bytes:
            return InputError(431, "headers_too_large",
                              f"{len(headers)} headers of {size} bytes; the limits are "
                              f"{self.max_headers} headers and {self.max_header_bytes} bytes",
                              "headers")
        return None

    async def classify_guarded(self, scope: dict, receive: Any, send: Any, request_id: str,
                               started: float) -> None:
        """classify, with any unexpected failure answered as a JSON 500 instead of a dropped
        connection."""
        answered = {"started": False}

        async def tracking_send(message: dict) -> None:
            answered["started"] = answered["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.classify(scope, receive, tracking_send, request_id, started)
        except Exception:
            logger.exception("classify %s failed", request_id)
            if not answered["started"]:
                await self.refuse(send, InputError(500, "internal", "unexpected failure; see "
                                                   "the server log", "service"))

    async def classify(self, scope: dict, receive: Any, send: Any, request_id: str,
                       started: float) -> None:
        # The body is read and checked before a concurrency slot is taken, under its own
        # deadline: slow or broken senders cannot hold the slots that scoring needs.
        try:
            check_content_type(_header(scope.get("headers", []), b"content-type"))
            body = await self.read_body_before_deadline(scope, receive)
            texts = parse_classify_body(body, self.max_chars, self.max_texts)
        except InputError as e:
            await self.refuse(send, e)
            return
        if self.in_flight >= self.max_concurrency:
            await self.refuse(send, InputError(429, "overloaded",
                                               f"more than {self.max_concurrency} requests in "
                                               "flight; retry later", "request"), retry=True)
            return
        self.in_flight += 1
        try:
            await self.classify_admitted(scope, send, texts, request_id, started)
        finally:
            self.in_flight -= 1

    async def read_body_before_deadline(self, scope: dict, receive: Any) -> bytes:
        try:
            return await asyncio.wait_for(self.read_body(scope, receive), self.body_timeout_s)
        except TimeoutError:
            raise InputError(408, "body_timeout", "request body not received within "
                             f"{self.body_timeout_s:g} s", "body") from None

    async def classify_admitted(self, scope: dict, send: Any, texts: list[str], request_id: str,
                                started: float) -> None:
        runtime = runtime_state.current()
        if runtime is None:
            await self.refuse(send, InputError(503, "not_ready", "model is still loading",
                                               "service"), retry=True)
            return
        # The same call as the @bentoml.api method, made here: through BentoML's route it cost
        # a third of the peak requests/s (docs/service.md, "One request path").
        answer = await DRAIN.within_deadline(runtime.classify(texts, request_id, started),
                                             late=None)
        if answer is None:
            await self.refuse(send, SHUTTING_DOWN, retry=True)
            return
        body = json.dumps(answer.body).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()),
                   *[(k.encode(), v.encode()) for k, v in answer.headers.items()]]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def read_body(self, scope: dict, receive: Any) -> bytes:
        declared = _header(scope.get("headers", []), b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise InputError(413, "body_too_large", f"request body of {declared} bytes exceeds "
                             f"the limit of {self.max_body_bytes}", "body")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InputError(400, "disconnected", "client went away", "body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise InputError(413, "body_too_large", "request body exceeds the limit of "
                                 f"{self.max_body_bytes} bytes", "body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def refuse(self, send: Any, error: InputError, retry: bool = False) -> None:
        service_metrics().errors.labels(kind=error.kind).inc()
        body = json.dumps(error.to_json()).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
        if retry:
            headers.append((b"retry-after", self.retry_after.encode()))
        if error is SHUTTING_DOWN or DRAIN.draining:  # reconnect to another instance
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
