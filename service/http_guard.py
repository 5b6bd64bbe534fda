"""The HTTP/1.1 connection layer under the gateway: a deadline and a size cap on request heads,
and the JSON error contract for requests the parser refuses.

BentoML 1.4 runs each worker as uvicorn with the httptools parser (`http="auto"`) and passes no
protocol option through, and the gateway middleware only sees a request once its head is
parsed. So these are enforced below it, in uvicorn's protocol class:

- a deadline on the head (`header_timeout_s`): uvicorn only times out idle keep-alive connections;
  a client that sends a request line and one header and then nothing was kept forever
  (slowloris), and enough of them exhausted the worker's file limit;
- a size cap on the head (`max_header_bytes`), counted on the bytes *before* they reach the
  parser: httptools grows a header value by concatenation, so parse time rose faster than size
  (64 MB took 5 s, during which the worker answered nobody);
- at most `max_pending_connections` connections waiting for their head: beyond it the one that
  has waited longest is closed, so a flood of slow connections cannot take every descriptor;
- parser errors (a Content-Length beyond 64 bits, bare LF, folded headers, ...) answered as the
  service's JSON error instead of uvicorn's plain-text 400.

`install()` registers the protocol under uvicorn's `auto` name, which is how the worker's
`uvicorn.Config(http="auto")` resolves its protocol class.
"""

from __future__ import annotations

import json
import logging
import resource
import uuid
from asyncio import TimerHandle
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import uvicorn.config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.metrics import service_metrics
from service.validation import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadLimits:
    """What a connection may do before its request head is complete."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 16384
    max_pending_connections: int = 512


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap on each request head."""

    limits: ClassVar[HeadLimits] = HeadLimits()
    # Connections whose head is still arriving, oldest first (a dict keeps insertion order).
    waiting: ClassVar[dict[GuardedHttpToolsProtocol, None]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timer: TimerHandle | None = None
        self.awaiting_head = True
        self.head_bytes = 0
        self.heads_completed = 0

    # -- connection lifetime ----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.start_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_head_deadline()
        super().connection_lost(exc)

    def start_head_deadline(self) -> None:
        if self.head_timer is not None:
            return
        self.head_timer = self.loop.call_later(self.limits.header_timeout_s, self.head_too_slow)
        self.waiting[self] = None
        if len(self.waiting) > self.limits.max_pending_connections:
            oldest = next(iter(self.waiting))
            oldest.refuse(408, "header_timeout", "closed to make room: more than "
                          f"{self.limits.max_pending_connections} connections were waiting for "
                          "their request headers")

    def stop_head_deadline(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        self.waiting.pop(self, None)

    def head_too_slow(self) -> None:
        self.head_timer = None
        if self.head_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
            self.stop_head_deadline()
            self.transport.close()  # nothing asked, nothing to answer
            return
        self.refuse(408, "header_timeout", "request headers not received within "
                    f"{self.limits.header_timeout_s:g} s")

    # -- reading ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.awaiting_head:
            room = self.limits.max_header_bytes - self.head_bytes
            if len(data) > room:
                # Feed only what the cap allows: the head may still end inside it.
                completed = self.heads_completed
                self.head_bytes += max(room, 0)
                if room > 0:
                    self.feed(data[:room])
                if self.transport.is_closing():
                    return
                if self.heads_completed == completed:
                    self.refuse(431, "headers_too_large", "the request line and headers exceed "
                                f"{self.limits.max_header_bytes} bytes", "headers")
                    return
                self.data_received(data[room:])
                return
            self.head_bytes += len(data)
        self.feed(data)

    def feed(self, data: bytes) -> None:
        """uvicorn's data_received, with parser errors answered in the JSON contract."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.refuse(400, "malformed_request", f"not a valid HTTP/1.1 request: {e}",
                        "request")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.start_head_deadline()

    def on_headers_complete(self) -> None:
        self.awaiting_head = False
        self.heads_completed += 1
        self.stop_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # Whatever arrives next on this connection is the next request's head.
        self.awaiting_head, self.head_bytes = True, 0

    # -- answering --------------------------------------------------------------------------

    def refuse(self, status: int, kind: str, detail: str, field: str = "request") -> None:
        """Answer `status` with the JSON error (unless a response is under way) and close."""
        self.stop_head_deadline()
        if self.transport.is_closing():
            return
        self.count_refusal(kind)
        # A request whose body broke while it is being answered gets no second answer.
        if self.cycle is None or self.cycle.response_complete:
            body, headers = self.error_body(status, kind, detail, field)
            self.transport.write(b"".join([
                STATUS_LINE[status], b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body), b"connection: close\r\n",
                *[name + b": " + value + b"\r\n" for name, value in headers], b"\r\n", body]))
        self.transport.close()

    def error_body(self, status: int, kind: str, detail: str, field: str
                   ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The service's JSON error and its extra headers (another app overrides this)."""
        body = json.dumps(InputError(status, kind, detail, field).to_json()).encode()
        return body, [(b"x-request-id", uuid.uuid4().hex.encode())]

    def count_refusal(self, kind: str) -> None:
        service_metrics().errors.labels(kind=kind).inc()


def raise_file_limit() -> tuple[int, int]:
    """Lift this process's soft limit on open files to its hard limit; returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard


def install(limits: HeadLimits) -> HeadLimits:
    """Make uvicorn's `http="auto"` this protocol, with `limits` (capped so the connections
    waiting for a head can use at most half of the worker's file descriptors)."""
    soft, _ = raise_file_limit()
    if soft != resource.RLIM_INFINITY and limits.max_pending_connections > soft // 2:
        logger.warning("max_pending_connections %d lowered to %d: half the open-file limit",
                       limits.max_pending_connections, soft // 2)
        limits = HeadLimits(limits.header_timeout_s, limits.max_header_bytes, soft // 2)
    GuardedHttpToolsProtocol.limits = limits
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:GuardedHttpToolsProtocol"
    return limits
