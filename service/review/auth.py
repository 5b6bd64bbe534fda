"""Who is reviewing: a shared token, presented as a Bearer header or as a signed session cookie.

API clients send `Authorization: Bearer <token>` and `X-Reviewer: <name>`; the browser logs in
once with the token and a name and then carries a cookie signed with a key derived from the token
(rotating the token ends every session). Each cookie carries a random session id, so logging out
revokes that session on the server (ReviewStore.revoke_session) and the old cookie stops working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

COOKIE = "review_session"
SESSION_SECONDS = 12 * 3600
MAX_REVIEWER_CHARS = 64


class AuthFailure(Exception):
    """Why a request is refused: 401 (no credentials) or 403 (wrong ones)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def check_reviewer(name: str | None) -> str:
    """A reviewer name as stored with each correction: non-empty, short, one line."""
    name = (name or "").strip()
    if not name or len(name) > MAX_REVIEWER_CHARS or any(c in name for c in "\r\n|"):
        raise AuthFailure(400, f"reviewer name must be 1-{MAX_REVIEWER_CHARS} characters on one "
                               "line without '|' (X-Reviewer header or the login form)")
    return name


def _signature(token: str, payload: str) -> str:
    key = hashlib.sha256(b"review-session:" + token.encode("utf-8")).digest()
    return hmac.new(key, payload.encode("utf-8"), hashlib.sha256).hexdigest()


def make_session(token: str, reviewer: str, now: float | None = None) -> str:
    """A cookie value naming the reviewer, signed with the token."""
    name = base64.urlsafe_b64encode(reviewer.encode("utf-8")).decode("ascii")
    issued = int(now if now is not None else time.time())
    payload = f"{name}|{issued}|{secrets.token_hex(16)}"
    return f"{payload}|{_signature(token, payload)}"


def session_id(value: str) -> str:
    """The random id of a session cookie (what logout revokes)."""
    return value.split("|")[2]


def session_issued(value: str) -> int:
    return int(value.split("|")[1])


def read_session(token: str, value: str, now: float | None = None) -> str:
    """The reviewer of a valid, unexpired session cookie; AuthFailure(403) otherwise."""
    try:
        name, issued, sid, signature = value.split("|")
        payload = f"{name}|{issued}|{sid}"
        valid = hmac.compare_digest(signature, _signature(token, payload))
        fresh = (now if now is not None else time.time()) - int(issued) < SESSION_SECONDS
        reviewer = base64.urlsafe_b64decode(name.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError, OverflowError):
        valid = fresh = False
    if not (valid and fresh):
        raise AuthFailure(403, "session is invalid or expired (or the token changed): log in again")
    return reviewer


def authenticate(token: str, authorization: str | None, reviewer_header: str | None,
                 cookie: str | None) -> str:
    """The reviewer behind a request, from a Bearer token + X-Reviewer or a session cookie."""
    if authorization:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise AuthFailure(401, "Authorization header must be 'Bearer <review token>'")
        if not token_matches(given.strip(), token):
            raise AuthFailure(403, "wrong review token")
        return check_reviewer(reviewer_header)
    if cookie:
        return read_session(token, cookie)
    raise AuthFailure(401, "review token required: send 'Authorization: Bearer <token>' and "
                           "'X-Reviewer: <name>', or log in at /login")
