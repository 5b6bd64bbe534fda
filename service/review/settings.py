"""Settings of the review UI: params.yaml `feedback:` plus the prediction log's database URL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.core.params import ParamsError, load_params
from service.settings import REPO_ROOT, load_settings

TOKEN_ENV = "MODERATION_REVIEW_TOKEN"


@dataclass(frozen=True)
class ReviewSettings:
    token: str
    db_url: str
    labels: list[str]
    page_size: int
    host: str
    port: int
    cookie_secure: str = "auto"


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
    serve = load_settings(path, environ)
    return ReviewSettings(token=token, db_url=serve.db_url, labels=list(params.data.labels),
                          page_size=params.feedback.page_size, host=params.feedback.host,
                          port=params.feedback.port,
                          cookie_secure=params.feedback.cookie_secure)
