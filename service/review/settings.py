"""Settings of the review UI: params.yaml `feedback:` plus the prediction log's database URL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.runtime.params import ParamsError, load_params
from service.http_guard import HeadLimits
from service.review.auth import token_weakness
from service.settings import REPO_ROOT, load_settings

TOKEN_ENV = "MODERATION_REVIEW_TOKEN"
HOSTS_ENV = "MODERATION_REVIEW_ALLOWED_HOSTS"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ReviewSettings:
    token: str
    db_url: str
    labels: list[str]
    page_size: int
    host: str
    port: int
    cookie_secure: str = "auto"
    validation_report: Path = Path("reports/validation.json")
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    max_failed_logins_per_client: int = 10
    max_failed_logins: int = 100
    failed_login_window_s: int = 300
    head_limits: HeadLimits = HeadLimits()


def load_review_settings(params_file: Path | str | None = None,
                         environ: dict[str, str] | None = None) -> ReviewSettings:
    """`feedback:` with MODERATION_REVIEW_TOKEN applied; the database is the service's
    (`serve.db_url`, overridden by MODERATION_DB_URL). An empty token is an error."""
    environ = os.environ if environ is None else environ
    path = Path(params_file or environ.get("MODERATION_PARAMS") or REPO_ROOT / "params.yaml")
    params = load_params(path)
    token = environ.get(TOKEN_ENV, params.feedback.review_token).strip()
    if not token:
        raise ParamsError(f"{path}: feedback.review_token is empty and {TOKEN_ENV} is not set; "
                          "the review UI refuses to run without a token. Set one, e.g. "
                          f"`export {TOKEN_ENV}=$(openssl rand -hex 16)`")
    weakness = token_weakness(token)
    if weakness:
        where = TOKEN_ENV if TOKEN_ENV in environ else f"{path}: feedback.review_token"
        raise ParamsError(f"{where} {weakness}: anyone who guesses it can change training "
                          f"labels. Use a random one, e.g. `export {TOKEN_ENV}=$(openssl rand "
                          "-hex 16)`")
    hosts = environ.get(HOSTS_ENV)
    allowed = ([h.strip().lower() for h in hosts.split(",") if h.strip()] if hosts is not None
               else [h.lower() for h in params.feedback.allowed_hosts])
    if not allowed:
        raise ParamsError(f"{HOSTS_ENV} names no host: set the hostnames reviewers use, "
                          "comma-separated (e.g. review.example.org,127.0.0.1)")
    serve = load_settings(path, environ)
    return ReviewSettings(token=token, db_url=serve.db_url, labels=list(params.data.labels),
                          page_size=params.feedback.page_size, host=params.feedback.host,
                          port=params.feedback.port,
                          cookie_secure=params.feedback.cookie_secure,
                          validation_report=Path(params.feedback.validation_report),
                          allowed_hosts=tuple(allowed),
                          max_failed_logins_per_client=params.feedback.max_failed_logins_per_client,
                          max_failed_logins=params.feedback.max_failed_logins,
                          failed_login_window_s=params.feedback.failed_login_window_s,
                          head_limits=HeadLimits(serve.header_timeout_s, serve.max_header_bytes,
                                                 serve.max_pending_connections))
