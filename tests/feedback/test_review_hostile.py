"""The review UI against a hostile browser page or client: cross-origin writes, framing, stale
sessions after logout, cookies over HTTPS and out-of-range values, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from service.review.app import create_app
from service.review.settings import ReviewSettings
from tests.feedback.conftest import LABELS, TOKEN, log_predictions
from tests.feedback.test_review_api import TEST_HOSTS

AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Reviewer": "alice"}
SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options",
                    "referrer-policy")


def client(url: str, cookie_secure: str = "auto", base_url: str = "http://testserver"
           ) -> TestClient:
    settings = ReviewSettings(token=TOKEN, db_url=url, labels=LABELS, page_size=50,
                              host="127.0.0.1", port=0, cookie_secure=cookie_secure,
                              allowed_hosts=TEST_HOSTS)
    return TestClient(create_app(settings), base_url=base_url)


@pytest.fixture
def logged(db_url) -> str:
    log_predictions(db_url, [[("you idiot", 0.92, "model-a"), ("lovely day", 0.08, "model-a")]])
    return db_url


def logged_in(url: str) -> TestClient:
    c = client(url)
    response = c.post("/login", data={"token": TOKEN, "reviewer": "alice"},
                      follow_redirects=False)
    assert response.status_code == 303
    return c


def reviewed(c: TestClient) -> int:
    return c.get("/api/counts", headers=AUTH).json()["all"]["reviewed"]


CORRECTION = json.dumps({"items": [{"id": 1, "label": "offensive"}]})


@pytest.mark.parametrize("headers", [
    {"Content-Type": "text/plain"},
    {"Content-Type": "application/x-www-form-urlencoded"},
    {"Content-Type": "multipart/form-data; boundary=x"},
    {},
], ids=["text-plain", "form", "multipart", "no-type"])
def test_a_logged_in_browser_cannot_be_made_to_post_a_non_json_correction(logged, headers):
    c = logged_in(logged)
    response = c.post("/api/corrections", content=CORRECTION, headers=headers)
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    assert reviewed(c) == 0


@pytest.mark.parametrize("headers", [
    {"Origin": "http://testserver:8080"},  # another port on the same host
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},
], ids=["other-port", "other-host", "null-origin", "same-site", "cross-site"])
def test_cross_origin_writes_are_refused_with_403(logged, headers):
    c = logged_in(logged)
    json_headers = {"Content-Type": "application/json", **headers}
    response = c.post("/api/corrections", content=CORRECTION, headers=json_headers)
    assert response.status_code == 403
    undo = c.post("/api/corrections/undo", content='{"ids": [1]}', headers=json_headers)
    assert undo.status_code == 403
    assert c.post("/logout", headers=headers, follow_redirects=False).status_code == 403
    assert reviewed(c) == 0


def test_same_origin_page_can_still_save(logged):
    c = logged_in(logged)
    response = c.post("/api/corrections", content=CORRECTION,
                      headers={"Content-Type": "application/json", "Origin": "http://testserver",
                               "Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 200 and reviewed(c) == 1


@pytest.mark.parametrize(("method", "path", "auth"), [
    ("GET", "/login", False), ("GET", "/livez", False), ("GET", "/", True),
    ("GET", "/api/items", True), ("GET", "/static/review.js", True), ("GET", "/api/items", False),
    ("GET", "/no-such-page", True), ("POST", "/api/corrections", True),
])
def test_every_response_carries_the_security_headers(logged, method, path, auth):
    response = client(logged).request(method, path, headers=AUTH if auth else {})
    for name in SECURITY_HEADERS:
        assert name in response.headers, (name, response.status_code)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_logout_ends_the_session_on_the_server(logged):
    c = logged_in(logged)
    stolen = c.cookies.get("review_session")
    assert c.get("/api/config").status_code == 200
    assert c.post("/logout", follow_redirects=False).status_code == 303
    replay = client(logged)
    replay.cookies.set("review_session", stolen)
    response = replay.get("/api/items")
    assert response.status_code == 403 and "logout" in response.json()["error"]
    assert logged_in(logged).get("/api/config").status_code == 200  # a new login works


@pytest.mark.parametrize(("mode", "base_url", "headers", "secure"), [
    ("auto", "http://testserver", {}, False),
    ("auto", "https://testserver", {}, True),
    ("auto", "http://testserver", {"X-Forwarded-Proto": "https"}, True),
    ("always", "http://testserver", {}, True),
    ("never", "https://testserver", {}, False),
])
def test_session_cookie_is_secure_behind_https(sqlite_url, mode, base_url, headers, secure):
    response = client(sqlite_url, mode, base_url).post(
        "/login", data={"token": TOKEN, "reviewer": "alice"}, headers=headers,
        follow_redirects=False)
    assert response.status_code == 303
    assert ("secure" in response.headers["set-cookie"].lower()) is secure


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/log.db"


OUT_OF_RANGE_QUERIES = [
    "offset=9223372036854775808", "offset=" + "9" * 40, "limit=9223372036854775808",
    "since=9999-12-31T23:59:59-01:00", "until=0001-01-01T00:00:00%2B01:00",
    "model_version=a%00b", "min_score=nan", "max_score=1e999",
]


@pytest.mark.parametrize("query", OUT_OF_RANGE_QUERIES)
def test_out_of_range_filters_are_a_json_4xx(logged, query):
    c = client(logged)
    for path in ("/api/items", "/api/counts"):
        response = c.get(f"{path}?{query}", headers=AUTH)
        assert 400 <= response.status_code < 500 or (path == "/api/counts"
                                                       and response.status_code == 200)
        assert isinstance(response.json(), dict)
    assert 400 <= c.get(f"/api/items?{query}", headers=AUTH).status_code < 500


DEEP = "[" * 10_000 + "]" * 10_000
OUT_OF_RANGE_BODIES = {
    "correction-id-2^63": ("/api/corrections", '{"items": [{"id": 9223372036854775808, '
                                               '"label": "offensive"}]}'),
    "correction-id-negative": ("/api/corrections", '{"items": [{"id": -1, "label": "offensive"}]}'),
    "undo-id-2^63": ("/api/corrections/undo", '{"ids": [9223372036854775808]}'),
    "undo-id-huge": ("/api/corrections/undo", '{"ids": [' + "9" * 5000 + "]}"),
    "deep-corrections": ("/api/corrections", DEEP),
    "deep-undo": ("/api/corrections/undo", '{"ids": ' + DEEP + "}"),
    "surrogate-label": ("/api/corrections", '{"items": [{"id": 1, "label": "\\ud800"}]}'),
}


@pytest.mark.parametrize("case", sorted(OUT_OF_RANGE_BODIES))
def test_out_of_range_bodies_are_a_json_4xx_and_save_nothing(logged, case):
    path, body = OUT_OF_RANGE_BODIES[case]
    c = client(logged)
    response = c.post(path, content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500 and response.json()["error"]
    assert reviewed(c) == 0
