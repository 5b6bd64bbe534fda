"""Who is reviewing: a shared token, presented as a Bearer header or as a signed session cookie.

API clients send `Authorization: Bearer <token>` and `X-Reviewer: <name>`; the browser logs in
once with the token and a name and then carries a cookie signed with a key derived from the token
(rotating the token ends every session). Each cookie carries a random session id, so logging out
revokes that session on the server (ReviewStore.revoke_session) and the old cookie stops working.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

COOKIE = "review_session"
SESSION_SECONDS = 12 * 3600
MAX_REVIEWER_CHARS = 64
MIN_TOKEN_CHARS = 16
MIN_TOKEN_BITS = 64


class AuthFailure(Exception):
    """Why a request is refused: 401 (no credentials) or 403 (wrong ones)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class WrongToken(AuthFailure):
    """A token was presented and it is not the review token (counted by LoginThrottle)."""


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def token_bits(token: str) -> float:
    """A strength estimate: length times the Shannon entropy of the token's own characters,
    so repetition ("aaaa...", "abcabc...") counts for little. `openssl rand -hex 16` gives ~115."""
    counts = Counter(token)
    return -len(token) * sum(n / len(token) * math.log2(n / len(token))
                             for n in counts.values())


def token_weakness(token: str) -> str | None:
    """Why a review token is too weak to guard training data, or None."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"is {len(token)} characters long; at least {MIN_TOKEN_CHARS} are required"
    bits = token_bits(token)
    if bits < MIN_TOKEN_BITS:
        return (f"is too predictable (about {bits:.0f} bits estimated from its characters; at "
                f"least {MIN_TOKEN_BITS} are required)")
    return None


class LoginThrottle:
    """Wrong tokens per client address and from everyone, over a sliding window.

    Once either limit is reached, token checks are refused (429) until the oldest failure leaves
    the window, so guessing costs at most `per_client` (and `total`) tries per window. Memory is
    bounded: failures stop being recorded once `total` is reached."""

    def __init__(self, per_client: int, total: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.per_client, self.total, self.window_s, self.clock = per_client, total, window_s, clock
        self.everyone: deque[float] = deque()
        self.by_client: dict[str, deque[float]] = {}

    def _expire(self, now: float) -> None:
        while self.everyone and self.everyone[0] <= now - self.window_s:
            self.everyone.popleft()
        for client in list(self.by_client):
            times = self.by_client[client]
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if not times:
                del self.by_client[client]

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try a token again, or None when it may now."""
        now = self.clock()
        self._expire(now)
        waits = []
        mine = self.by_client.get(client)
        if mine is not None and len(mine) >= self.per_client:
            waits.append(mine[0] + self.window_s - now)
        if len(self.everyone) >= self.total:
            waits.append(self.everyone[0] + self.window_s - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, client: str) -> None:
        now = self.clock()
        self.everyone.append(now)
        self.by_client.setdefault(client, deque()).append(now)


def check_reviewer(name: str | None) -> str:
    """A reviewer name as stored with each correction: non-empty, short, one line."""
    name = (name or "").strip()
    if not name or len(name) > MAX_REVIEWER_CHARS or any(c in name for c in "\r\n|"):
        raise AuthFailure(400, f"reviewer name must be 1-{MAX_REVIEWER_CHARS} characters on one "
                               "line without '|' (X-Reviewer header or the login form)")
    return name


class _SessionSigner(TimestampSigner):
    """itsdangerous' timestamp signer with an optional fixed clock (tests age a session)."""

    def __init__(self, *args, now: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.now = now

    def get_timestamp(self) -> int:
        return int(self.now if self.now is not None else time.time())


def _serializer(token: str, now: float | None) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(token, salt="review-session", signer=_SessionSigner,
                                  signer_kwargs={"now": now, "digest_method": hashlib.sha256})


def make_session(token: str, reviewer: str, now: float | None = None) -> str:
    """A cookie value naming the reviewer, signed with the token."""
    return _serializer(token, now).dumps([reviewer, secrets.token_hex(16)])


def session_id(value: str) -> str:
    """The random id of a session cookie (what logout revokes); "" when it has none. Read
    without checking the signature: it only names what to look up."""
    _, payload = _serializer("", None).loads_unsafe(value)
    return payload[1] if _well_formed(payload) else ""


def _well_formed(payload) -> bool:
    return (isinstance(payload, list) and len(payload) == 2
            and all(isinstance(part, str) for part in payload))


def read_session(token: str, value: str, now: float | None = None) -> str:
    """The reviewer of a valid, unexpired session cookie; AuthFailure(403) otherwise."""
    try:
        payload = _serializer(token, now).loads(value, max_age=SESSION_SECONDS)
    except BadData:
        payload = None
    if not _well_formed(payload):
        raise AuthFailure(403, "session is invalid or expired (or the token changed): log in again")
    return payload[0]


def authenticate(token: str, authorization: str | None, reviewer_header: str | None,
                 cookie: str | None) -> str:
    """The reviewer behind a request, from a Bearer token + X-Reviewer or a session cookie."""
    if authorization:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise AuthFailure(401, "Authorization header must be 'Bearer <review token>'")
        if not token_matches(given.strip(), token):
            raise WrongToken(403, "wrong review token")
        return check_reviewer(reviewer_header)
    if cookie:
        return read_session(token, cookie)
    raise AuthFailure(401, "review token required: send 'Authorization: Bearer <token>' and "
                           "'X-Reviewer: <name>', or log in at /login")
