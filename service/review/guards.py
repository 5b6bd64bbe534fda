"""Browser-facing guards of the review UI: only its own hostnames, same-origin writes, JSON-only
API bodies, and the security headers on every response.

A page on an attacker's domain whose DNS name is later pointed at 127.0.0.1 (DNS rebinding) is
same-origin with itself, so its requests pass the Origin checks; they still carry the attacker's
name in `Host`, which is why only the configured hostnames are answered.

Corrections become training data, so a page on another origin (another port on the same host
counts) must not be able to post them with the reviewer's cookie, nor frame the UI.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from service.http_guard import GuardedHttpToolsProtocol

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
PROBE_PATHS = {"/livez", "/readyz"}  # the kubelet's probes send the pod IP as Host
ALLOWED_FETCH_SITES = {"same-origin", "none"}  # "none": typed in the address bar

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
     b"img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
     b"form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make form posts send Origin: null
    (b"cross-origin-opener-policy", b"same-origin"),
]


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def host_reason(scope: dict, allowed_hosts: tuple[str, ...]) -> str | None:
    """Why the request's Host is not one this UI serves, or None."""
    host = _header(scope, b"host")
    try:
        name = urlsplit(f"//{host}").hostname if host else None
    except ValueError:
        name = None
    if name is not None and name in allowed_hosts:
        return None
    return (f"Host {host!r} is not a name this review UI answers to; allowed: "
            f"{', '.join(allowed_hosts)} (feedback.allowed_hosts or "
            "MODERATION_REVIEW_ALLOWED_HOSTS)")


def cross_origin_reason(scope: dict) -> str | None:
    """Why a state-changing request looks cross-origin, or None when it is same-origin."""
    site = _header(scope, b"sec-fetch-site")
    if site is not None and site.lower() not in ALLOWED_FETCH_SITES:
        return f"Sec-Fetch-Site {site!r}: writes are accepted from this UI's own pages only"
    origin = _header(scope, b"origin")
    if origin is None:  # non-browser clients (curl, scripts with the Bearer token)
        return None
    host = (_header(scope, b"host") or "").lower()
    if origin == "null" or urlsplit(origin).netloc.lower() != host:
        return f"Origin {origin!r} is not this UI ({host!r})"
    return None


def non_json_reason(scope: dict) -> str | None:
    """Why an API write body is refused: only application/json (never a form or text/plain)."""
    content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return f"Content-Type must be application/json, got {content_type or 'none'!r}"
    return None


def security_headers() -> dict[str, str]:
    """SECURITY_HEADERS for a Starlette response built outside this middleware (the 500 path)."""
    return {k.decode(): v.decode() for k, v in SECURITY_HEADERS}


async def _refuse(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BrowserGuards:
    """Pure ASGI middleware: security headers on every response; only the allowed Host names;
    same-origin, JSON-only writes."""

    def __init__(self, app: Any, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.allowed_hosts = tuple(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *[(k, v) for k, v in SECURITY_HEADERS if k not in present]]
            await send(message)

        reason, status = None, 400
        if scope["path"] not in PROBE_PATHS:
            reason = host_reason(scope, self.allowed_hosts)
        if reason is None and scope["method"] in STATE_CHANGING:
            reason = cross_origin_reason(scope)
            status = 403
            if reason is None and scope["path"].startswith("/api/"):
                reason, status = non_json_reason(scope), 415
        if reason is not None:
            await _refuse(send_with_headers, status, reason)
            return
        await self.app(scope, receive, send_with_headers)


class ReviewHttpProtocol(GuardedHttpToolsProtocol):
    """The service's header deadline and size cap for the review UI's uvicorn, refusing in the
    UI's own contract: {"error": ...} with the security headers."""

    def error_body(self, status: int, kind: str, detail: str, field: str
                   ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        return json.dumps({"error": detail}).encode(), SECURITY_HEADERS

    def count_refusal(self, kind: str) -> None:
        pass  # the review UI exports no metrics
