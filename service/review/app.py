"""The review UI: a small ASGI app over the prediction log (plain HTML + JS, JSON API).

Run it with `make review` (or `python -m pipelines review`); it reads the same database the
service logs to and writes reviewed labels to the `corrections` table next to it.
"""

from __future__ import annotations

import html
import json
import logging
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service.review.auth import (
    COOKIE,
    SESSION_SECONDS,
    AuthFailure,
    LoginThrottle,
    WrongToken,
    authenticate,
    check_reviewer,
    make_session,
    read_session,
    session_id,
    token_matches,
)
from service.review.guards import BrowserGuards, ReviewHttpProtocol, security_headers
from service.review.settings import ReviewSettings
from service.review.store import (
    MAX_PAGE,
    ReviewInputError,
    ReviewStore,
    create_review_schema,
    parse_filters,
    prediction_id,
)

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
PUBLIC_PATHS = {"/login", "/livez", "/readyz"}

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Moderation review: log in</title>
<style>body{{font:15px system-ui,sans-serif;max-width:26rem;margin:4rem auto;color:#222}}
label{{display:block;margin:.8rem 0 .2rem}}input{{width:100%;padding:.4rem;font:inherit}}
button{{margin-top:1rem;padding:.4rem 1.2rem;font:inherit}}.error{{color:#b00020}}</style>
</head><body><h1>Moderation review</h1>
<p class="error" role="alert">{error}</p>
<form method="post" action="/login">
<label for="reviewer">Your name (stored with each correction)</label>
<input id="reviewer" name="reviewer" autocomplete="username" value="{reviewer}" required>
<label for="token">Review token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button></form></body></html>"""


def login_page(status: int, error: str = "", reviewer: str = "") -> HTMLResponse:
    return HTMLResponse(LOGIN_PAGE.format(error=html.escape(error),
                                          reviewer=html.escape(reviewer)), status_code=status)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def client_address(request: Request) -> str:
    """Who failed a login, for the per-client limit (behind the Gateway: its proxy address)."""
    return request.client.host if request.client else "unknown"


def throttled(request: Request) -> int | None:
    """Seconds this client must wait before a token is checked again, or None."""
    throttle: LoginThrottle = request.app.state.throttle
    return throttle.retry_after(client_address(request))


def too_many_failures(wait_s: int) -> str:
    return (f"too many wrong review tokens (from this client or in total); retry in {wait_s} s")


class RequireReviewer(BaseHTTPMiddleware):
    """Every path but the login page and liveness needs the token (header or session)."""

    async def dispatch(self, request: Request, call_next) -> Response:
        if request.url.path in PUBLIC_PATHS:
            return await call_next(request)
        settings: ReviewSettings = request.app.state.settings
        wait_s = throttled(request) if request.headers.get("authorization") else None
        if wait_s is not None:
            return error(429, too_many_failures(wait_s), {"Retry-After": str(wait_s)})
        try:
            request.state.reviewer = authenticate(
                settings.token, request.headers.get("authorization"),
                request.headers.get("x-reviewer"), request.cookies.get(COOKIE))
            check_not_revoked(request)
        except AuthFailure as e:
            if isinstance(e, WrongToken):
                request.app.state.throttle.failed(client_address(request))
            if request.url.path.startswith("/api/"):
                headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
                return JSONResponse({"error": e.message}, status_code=e.status, headers=headers)
            return login_page(e.status, "" if e.status == 401 else e.message)
        return await call_next(request)


def check_not_revoked(request: Request) -> None:
    """A cookie session ended by logout stays ended (Bearer requests carry no session)."""
    cookie = request.cookies.get(COOKIE)
    if request.headers.get("authorization") or not cookie:
        return
    if request.app.state.store.is_revoked(session_id(cookie)):
        raise AuthFailure(403, "session ended by logout: log in again")


def cookie_secure(request: Request) -> bool:
    """Whether the session cookie gets `Secure`: always, never, or when the request (or the
    proxy in front, X-Forwarded-Proto) used HTTPS."""
    mode = request.app.state.settings.cookie_secure
    if mode != "auto":
        return mode == "always"
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


async def show_login(request: Request) -> Response:
    return login_page(200)


async def do_login(request: Request) -> Response:
    form = await request.form()
    settings: ReviewSettings = request.app.state.settings
    given, reviewer = str(form.get("token", "")), str(form.get("reviewer", ""))
    if not given:
        return login_page(401, "Enter the review token.", reviewer)
    wait_s = throttled(request)
    if wait_s is not None:
        response = login_page(429, too_many_failures(wait_s).capitalize() + ".", reviewer)
        response.headers["Retry-After"] = str(wait_s)
        return response
    if not token_matches(given, settings.token):
        request.app.state.throttle.failed(client_address(request))
        return login_page(403, "Wrong review token.", reviewer)
    try:
        reviewer = check_reviewer(reviewer)
    except AuthFailure as e:
        return login_page(e.status, e.message, reviewer)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, make_session(settings.token, reviewer), max_age=SESSION_SECONDS,
                        httponly=True, samesite="strict", path="/",
                        secure=cookie_secure(request))
    return response


async def do_logout(request: Request) -> Response:
    cookie = request.cookies.get(COOKIE)
    try:
        read_session(request.app.state.settings.token, cookie or "")  # store only valid ones
        # kept until the latest moment the cookie could still be valid
        _store(request).revoke_session(session_id(cookie), int(time.time()) + SESSION_SECONDS)
    except AuthFailure:
        pass  # nothing to revoke
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


async def livez(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the prediction log answers (the pod gets traffic only then)."""
    try:
        _store(request).counts()
    except Exception as e:  # any driver error means "not ready", reported, never raised
        return JSONResponse({"status": "unavailable", "error": type(e).__name__},
                            status_code=503)
    return JSONResponse({"status": "ok"})


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


def _store(request: Request) -> ReviewStore:
    return request.app.state.store


def _query(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items()}


async def api_config(request: Request) -> Response:
    store = _store(request)
    return JSONResponse({"labels": store.labels, "positive_label": store.positive,
                         "model_versions": store.model_versions(),
                         "page_size": request.app.state.settings.page_size,
                         "reviewer": request.state.reviewer})


def _int(query: dict[str, str], name: str, default: int) -> int:
    raw = query.get(name) or str(default)
    try:
        return int(raw)
    except ValueError:
        raise ReviewInputError(f"{name}={raw!r} is not an integer") from None


async def api_items(request: Request) -> Response:
    store, query = _store(request), _query(request)
    try:
        filters = parse_filters(query, store.labels)
        items = store.list_items(filters, sort=query.get("sort") or "uncertainty",
                                 limit=_int(query, "limit", request.app.state.settings.page_size),
                                 offset=_int(query, "offset", 0))
    except ReviewInputError as e:
        return error(e.status, str(e))
    return JSONResponse({"items": items, "counts": store.counts(filters),
                         "all": store.counts()})


async def api_counts(request: Request) -> Response:
    store = _store(request)
    try:
        filters = parse_filters(_query(request), store.labels)
    except ReviewInputError as e:
        return error(e.status, str(e))
    return JSONResponse({"counts": store.counts(filters), "all": store.counts()})


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReviewInputError(f"request body is not valid JSON: {e}", status=400) from None
    except RecursionError:
        raise ReviewInputError("request body is nested too deeply", status=400) from None
    except ValueError as e:  # an integer literal beyond Python's digit limit
        raise ReviewInputError(f"request body is not valid JSON: {e}", status=400) from None


async def api_save_corrections(request: Request) -> Response:
    """Body {"items": [{"id": 12, "label": "offensive"}, ...]}: confirm or fix labels."""
    store = _store(request)
    try:
        body = await _json_body(request)
        pairs = store.check_corrections(body.get("items") if isinstance(body, dict) else None)
        saved = store.save_corrections(pairs, request.state.reviewer)
    except ReviewInputError as e:
        return error(e.status, str(e))
    return JSONResponse({"saved": saved, "reviewer": request.state.reviewer,
                         "all": store.counts()})


async def api_undo(request: Request) -> Response:
    """Body {"ids": [12, 13]}: forget those reviews."""
    store = _store(request)
    try:
        body = await _json_body(request)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > MAX_PAGE:
            raise ReviewInputError(f'expected {{"ids": [<prediction id>, ...]}} with 1-{MAX_PAGE} '
                                   "integers")
        ids = [prediction_id(pid, f"ids[{i}]") for i, pid in enumerate(ids)]
    except ReviewInputError as e:
        return error(e.status, str(e))
    return JSONResponse({"undone": store.undo(ids), "all": store.counts()})


# What the queue passes on from each suspicious row, and the JSON types it accepts there; a
# report is data on disk that anyone with repository access can edit, never trusted as shaped.
ROW_FIELDS = {"id": (str,), "text": (str,), "label": (str,), "suggested": (str,),
              "file": (str,), "line": (int,), "confidence": (int, float)}
SUMMARY_FIELDS = {"scored": (bool,), "reason": (str,), "flagged": (bool,),
                  "changed_rows": (int,), "dataset_md5": (str,)}
ESTIMATE_FIELDS = {"share": (int, float), "low": (int, float), "high": (int, float),
                   "rows": (int,), "wrong_rows": (int,), "scorer": (str,)}
RERUN = "rerun the validate stage (`dvc repro validate`)"


def _typed(value: Any, types: tuple[type, ...]) -> bool:
    return value is None or (isinstance(value, types)
                             and not (isinstance(value, bool) and bool not in types))


def _check_fields(record: dict, fields: dict[str, tuple[type, ...]], where: str
                  ) -> dict[str, Any]:
    for key, types in fields.items():
        if not _typed(record.get(key), types):
            raise ReviewInputError(f"{where}.{key} is a {type(record[key]).__name__}, expected "
                                   f"{' or '.join(t.__name__ for t in types)}: {RERUN}")
    return {key: record.get(key) for key in fields}


def read_label_noise(path: Path) -> dict[str, Any]:
    """The label_noise section of the validation report (reports/validation.json), reduced to
    the fields the queue shows, each of the type the validate stage writes."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReviewInputError(f"{path} does not exist: run the validate stage (`dvc repro "
                               "validate`) to rank suspicious training labels",
                               status=404) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReviewInputError(f"{path} is not a readable validation report: {e}") from None
    except RecursionError:
        raise ReviewInputError(f"{path} is nested too deeply to be a validation report: "
                               f"{RERUN}") from None
    except ValueError as e:  # an integer literal beyond Python's digit limit
        raise ReviewInputError(f"{path} is not a readable validation report: {e}") from None
    noise = report.get("label_noise") if isinstance(report, dict) else None
    if not isinstance(noise, dict) or not isinstance(noise.get("suspicious", []), list):
        raise ReviewInputError(f"{path} has no label_noise section: {RERUN}")
    summary = _check_fields({"dataset_md5": report.get("dataset_md5")} | noise, SUMMARY_FIELDS,
                            f"{path}: label_noise")
    estimate = noise.get("estimate")
    if estimate is not None:
        if not isinstance(estimate, dict):
            raise ReviewInputError(f"{path}: label_noise.estimate is not an object: {RERUN}")
        estimate = _check_fields(estimate, ESTIMATE_FIELDS, f"{path}: label_noise.estimate")
    rows = []
    for i, row in enumerate(noise.get("suspicious", [])):
        where = f"{path}: label_noise.suspicious[{i}]"
        if not isinstance(row, dict):
            raise ReviewInputError(f"{where} is not an object: {RERUN}")
        if row.get("id") is None:
            raise ReviewInputError(
                f"{where} has no id: the training file has no `id` column, so a decision "
                "could not name its row. Add an `id` column with a unique value per row to the "
                "training CSV (data.train_file in params.yaml), then rerun the validate stage")
        row = _check_fields(row, ROW_FIELDS, where)
        if not all(isinstance(row[k], str) for k in ("text", "label", "suggested")):
            raise ReviewInputError(f"{where} lacks text, label or suggested: {RERUN}")
        rows.append(row)
    return summary | {"estimate": estimate, "suspicious": rows}


async def api_label_queue(request: Request) -> Response:
    """The suspicious training rows of the validation report, with their decisions so far."""
    store = _store(request)
    try:
        noise = read_label_noise(request.app.state.settings.validation_report)
    except ReviewInputError as e:
        return error(e.status, str(e))
    decided = {d["id"]: d for d in store.label_decisions()}
    items = []
    for row in noise.get("suspicious", []):
        decision = decided.get(str(row.get("id")))
        same_row = decision is not None and decision["text"] == row.get("text")
        items.append(row | {"review": decision if same_row else None})
    return JSONResponse({"report": str(request.app.state.settings.validation_report),
                         "dataset_md5": noise.get("dataset_md5"),
                         "scored": bool(noise.get("scored")), "reason": noise.get("reason"),
                         "estimate": noise.get("estimate"), "flagged": noise.get("flagged"),
                         "changed_rows": noise.get("changed_rows"), "items": items})


async def api_save_label_decisions(request: Request) -> Response:
    """Body {"items": [{"id": "<training row id>", "label": "offensive"}]}: keep or change the
    label of suspicious training rows (applied to train.csv by `make feedback`)."""
    store = _store(request)
    try:
        body = await _json_body(request)
        suspicious = read_label_noise(request.app.state.settings.validation_report)
        pairs = store.check_label_decisions(body.get("items") if isinstance(body, dict) else None,
                                            suspicious.get("suspicious", []))
        saved = store.save_label_decisions(pairs, request.state.reviewer)
    except ReviewInputError as e:
        return error(e.status, str(e))
    return JSONResponse({"saved": saved, "reviewer": request.state.reviewer})


async def internal_error(request: Request, exc: Exception) -> Response:
    """A fault (database down, a bug) is a JSON 500 with the cause in the log, not plain text."""
    logger.exception("review UI: %s %s failed", request.method, request.url.path,
                     exc_info=exc)
    # Starlette answers this outside the middleware stack: the guards' headers are added here.
    return error(500, "internal error; see the review UI's log", security_headers())


def create_app(settings: ReviewSettings) -> Starlette:
    """The review app over the prediction log at settings.db_url (tables created if missing)."""
    create_review_schema(settings.db_url)
    app = Starlette(
        routes=[
            Route("/livez", livez),
            Route("/readyz", readyz),
            Route("/login", show_login, methods=["GET"]),
            Route("/login", do_login, methods=["POST"]),
            Route("/logout", do_logout, methods=["POST"]),
            Route("/", index),
            Route("/api/config", api_config),
            Route("/api/items", api_items),
            Route("/api/counts", api_counts),
            Route("/api/corrections", api_save_corrections, methods=["POST"]),
            Route("/api/corrections/undo", api_undo, methods=["POST"]),
            Route("/api/label-queue", api_label_queue),
            Route("/api/label-decisions", api_save_label_decisions, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(BrowserGuards, allowed_hosts=settings.allowed_hosts),
                    Middleware(RequireReviewer)],
        exception_handlers={Exception: internal_error},
    )
    app.state.settings = settings
    app.state.store = ReviewStore(settings.db_url, settings.labels)
    app.state.throttle = LoginThrottle(settings.max_failed_logins_per_client,
                                       settings.max_failed_logins, settings.failed_login_window_s)
    return app


def serve(settings: ReviewSettings, host: str | None = None, port: int | None = None) -> None:
    """Run the review UI with uvicorn until interrupted."""
    import uvicorn

    host, port = host or settings.host, port or settings.port
    print(f"review UI: http://{host}:{port}/ (database {settings.db_url.split('@')[-1]})",
          flush=True)
    # The same request-head deadline and size cap as the service (serve.header_timeout_s, ...).
    protocol = type("ReviewProtocol", (ReviewHttpProtocol,),
                    {"limits": settings.head_limits, "waiting": {}})
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                timeout_graceful_shutdown=5, http=protocol)
