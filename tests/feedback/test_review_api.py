"""The review API: token auth, corrections with reviewer and time, filters, sorting and counts,
on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from starlette.testclient import TestClient

from service.predlog import connect
from service.review.app import create_app
from service.review.auth import make_session
from service.review.settings import ReviewSettings, load_review_settings
from tests.conftest import ROOT, run
from tests.feedback.conftest import LABELS, TOKEN, log_predictions

AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Reviewer": "alice"}
TEST_HOSTS = ("testserver", "127.0.0.1", "localhost")  # starlette's TestClient sends "testserver"


def settings(url: str, token: str = TOKEN) -> ReviewSettings:
    return ReviewSettings(token=token, db_url=url, labels=LABELS, page_size=50,
                          host="127.0.0.1", port=0, allowed_hosts=TEST_HOSTS)


def client(url: str, token: str = TOKEN) -> TestClient:
    return TestClient(create_app(settings(url, token)))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path}/log.db"
    log_predictions(url, [[("you idiot", 0.92, "model-a"), ("lovely day", 0.08, "model-a")],
                          [("borderline remark", 0.51, "model-b")]])
    return url


@pytest.fixture
def logged(db_url) -> str:
    """Six predictions over two model versions; request 0 also has shadow labels."""
    log_predictions(db_url, [
        [("you are an idiot", 0.95, "model-a"), ("have a nice day", 0.02, "model-a"),
         ("meh whatever", 0.55, "model-a")],
        [("shut up", 0.72, "model-b"), ("thanks for sharing", 0.30, "model-b"),
         ("not sure about this", 0.47, "model-b")],
    ], shadow={0: ["offensive", "offensive", "not-offensive"]})
    return db_url


def ids_by_text(c: TestClient, query: str = "") -> dict[str, int]:
    items = c.get(f"/api/items?{query}", headers=AUTH).json()["items"]
    return {item["text"]: item["id"] for item in items}


def texts(c: TestClient, query: str) -> list[str]:
    response = c.get(f"/api/items?{query}", headers=AUTH)
    assert response.status_code == 200, response.text
    return [item["text"] for item in response.json()["items"]]


# -- auth --------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/api/items", "/api/counts", "/api/config",
                                  "/static/review.js"])
def test_requests_without_a_token_are_refused_with_401(sqlite_url, path):
    response = client(sqlite_url).get(path)
    assert response.status_code == 401
    assert "alice" not in response.text and "you idiot" not in response.text


def test_correction_without_a_token_is_refused_and_not_saved(sqlite_url):
    c = client(sqlite_url)
    response = c.post("/api/corrections", json={"items": [{"id": 1, "label": "offensive"}]})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert c.get("/api/counts", headers=AUTH).json()["all"]["reviewed"] == 0


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer wrong-token", "X-Reviewer": "alice"},
    {"Authorization": f"Bearer {TOKEN}x", "X-Reviewer": "alice"},
])
def test_wrong_token_is_refused_with_403(sqlite_url, headers):
    c = client(sqlite_url)
    assert c.get("/api/items", headers=headers).status_code == 403
    response = c.post("/api/corrections", headers=headers,
                      json={"items": [{"id": 1, "label": "offensive"}]})
    assert response.status_code == 403 and response.json() == {"error": "wrong review token"}


def test_session_signed_with_another_token_is_refused_with_403(sqlite_url):
    c = client(sqlite_url)
    c.cookies.set("review_session", make_session("some-other-token", "mallory"))
    assert c.get("/api/items").status_code == 403
    assert c.get("/").status_code == 403


def test_login_form_refuses_a_wrong_token_and_accepts_the_right_one(sqlite_url):
    c = client(sqlite_url)
    wrong = c.post("/login", data={"token": "guess", "reviewer": "bob"}, follow_redirects=False)
    assert wrong.status_code == 403 and "Wrong review token" in wrong.text
    assert "review_session" not in wrong.headers.get("set-cookie", "")
    empty = c.post("/login", data={"token": "", "reviewer": "bob"}, follow_redirects=False)
    assert empty.status_code == 401
    ok = c.post("/login", data={"token": TOKEN, "reviewer": "bob"}, follow_redirects=False)
    assert ok.status_code == 303 and "HttpOnly" in ok.headers["set-cookie"]
    assert c.get("/").status_code == 200
    assert c.get("/api/config").json()["reviewer"] == "bob"


def test_bearer_token_without_a_reviewer_name_is_400(sqlite_url):
    response = client(sqlite_url).get("/api/items", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400 and "X-Reviewer" in response.json()["error"]


def test_review_ui_refuses_to_start_without_a_token():
    result = run([sys.executable, "-m", "pipelines", "review"], ROOT, check=False,
                 MODERATION_REVIEW_TOKEN="")
    assert result.returncode == 2
    assert "feedback.review_token is empty" in result.stderr
    assert "MODERATION_REVIEW_TOKEN" in result.stderr


# -- corrections -------------------------------------------------------------------------------

def test_invalid_label_is_refused_naming_the_label_and_the_allowed_set(logged):
    c = client(logged)
    ids = list(ids_by_text(c).values())
    response = c.post("/api/corrections", headers=AUTH, json={"items": [
        {"id": ids[0], "label": "offensive"}, {"id": ids[1], "label": "spam"}]})
    assert response.status_code == 422
    message = response.json()["error"]
    assert "items[1].label" in message and "'spam'" in message
    assert "['not-offensive', 'offensive']" in message
    assert c.get("/api/counts", headers=AUTH).json()["all"]["reviewed"] == 0  # all or nothing


def test_unknown_prediction_id_is_404_and_nothing_is_saved(logged):
    c = client(logged)
    known = next(iter(ids_by_text(c).values()))
    response = c.post("/api/corrections", headers=AUTH, json={"items": [
        {"id": known, "label": "offensive"}, {"id": 999999, "label": "offensive"}]})
    assert response.status_code == 404 and "999999" in response.json()["error"]
    assert c.get("/api/counts", headers=AUTH).json()["all"]["reviewed"] == 0


@pytest.mark.parametrize("body, status, fragment", [
    (b"{not json", 400, "not valid JSON"),
    (b'{"items": []}', 422, "at least one item"),
    (b'{"items": [{"id": "7", "label": "offensive"}]}', 422, "items[0].id"),
    (b'{"items": [{"id": 1}]}', 422, "items[0].label"),
    (b'[1, 2]', 422, "at least one item"),
])
def test_malformed_correction_bodies_get_a_4xx_naming_the_field(sqlite_url, body, status,
                                                                 fragment):
    response = client(sqlite_url).post("/api/corrections", content=body,
                                       headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == status and fragment in response.json()["error"]


def test_corrections_are_stored_with_reviewer_time_and_action(logged):
    c = client(logged)
    ids = ids_by_text(c)
    before = datetime.now(UTC) - timedelta(seconds=1)
    response = c.post("/api/corrections", headers=AUTH, json={"items": [
        {"id": ids["you are an idiot"], "label": "offensive"},
        {"id": ids["meh whatever"], "label": "not-offensive"}]})
    assert response.status_code == 200 and response.json()["saved"] == 2
    conn = connect(logged)
    try:
        rows = conn.execute("SELECT prediction_id, label, action, reviewer, reviewed_at "
                            "FROM corrections ORDER BY prediction_id").fetchall()
    finally:
        conn.close()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (ids["you are an idiot"], "offensive", "confirmed", "alice"),
        (ids["meh whatever"], "not-offensive", "fixed", "alice")]
    for row in rows:
        stamp = row[4] if isinstance(row[4], datetime) else datetime.fromisoformat(
            row[4].replace("Z", "+00:00"))
        assert before <= stamp <= datetime.now(UTC)


def test_a_later_review_replaces_the_earlier_one_and_undo_forgets_it(logged):
    c = client(logged)
    pid = ids_by_text(c)["shut up"]
    c.post("/api/corrections", headers=AUTH, json={"items": [{"id": pid, "label": "offensive"}]})
    bob = {**AUTH, "X-Reviewer": "bob"}
    c.post("/api/corrections", headers=bob, json={"items": [{"id": pid, "label": "not-offensive"}]})
    item = next(i for i in c.get("/api/items?status=reviewed", headers=AUTH).json()["items"])
    assert item["review"]["label"] == "not-offensive" and item["review"]["reviewer"] == "bob"
    assert item["review"]["action"] == "fixed"
    assert c.get("/api/counts", headers=AUTH).json()["all"]["reviewed"] == 1
    undone = c.post("/api/corrections/undo", headers=AUTH, json={"ids": [pid]}).json()
    assert undone["undone"] == 1 and undone["all"]["reviewed"] == 0


# -- filters, sorting, counts ------------------------------------------------------------------

def test_filters_by_label_score_model_and_shadow_disagreement(logged):
    c = client(logged)
    assert set(texts(c, "label=offensive")) == {"you are an idiot", "meh whatever", "shut up"}
    assert set(texts(c, "min_score=0.4&max_score=0.6")) == {"meh whatever",
                                                            "not sure about this"}
    assert set(texts(c, "model_version=model-b")) == {"shut up", "thanks for sharing",
                                                      "not sure about this"}
    assert set(texts(c, "disagree=1")) == {"have a nice day", "meh whatever"}
    assert texts(c, "disagree=1&label=offensive") == ["meh whatever"]


def test_time_range_filter_keeps_only_predictions_inside_it(logged):
    c = client(logged)
    now = datetime.now(UTC)
    past = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    future = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(texts(c, f"since={past}&until={future}")) == 6
    assert texts(c, f"since={future}") == []
    assert texts(c, f"until={past}") == []


def test_uncertainty_sort_puts_scores_closest_to_one_half_first(logged):
    c = client(logged)
    assert texts(c, "sort=uncertainty") == ["not sure about this", "meh whatever",
                                            "thanks for sharing", "shut up",
                                            "you are an idiot", "have a nice day"]
    assert texts(c, "sort=newest")[0] == "not sure about this"
    assert texts(c, "sort=oldest")[0] == "you are an idiot"


def test_review_status_filter_and_counts_follow_the_reviews(logged):
    c = client(logged)
    ids = ids_by_text(c)
    c.post("/api/corrections", headers=AUTH, json={"items": [
        {"id": ids["shut up"], "label": "offensive"},
        {"id": ids["have a nice day"], "label": "offensive"}]})
    assert set(texts(c, "status=reviewed")) == {"shut up", "have a nice day"}
    assert texts(c, "status=fixed") == ["have a nice day"]
    assert "shut up" not in texts(c, "status=unreviewed")
    body = c.get("/api/counts?model_version=model-b", headers=AUTH).json()
    assert body["counts"] == {"total": 3, "reviewed": 1, "unreviewed": 2, "fixed": 0,
                              "confirmed": 1}
    assert body["all"] == {"total": 6, "reviewed": 2, "unreviewed": 4, "fixed": 1,
                           "confirmed": 1}


@pytest.mark.parametrize("query, fragment", [
    ("label=spam", "label='spam' is not one of ['not-offensive', 'offensive']"),
    ("min_score=high", "min_score='high' is not a number"),
    ("max_score=1.5", "max_score='1.5' is outside [0, 1]"),
    ("since=yesterday", "since='yesterday' is not an ISO 8601 time"),
    ("status=maybe", "status='maybe' is not one of"),
    ("sort=random", "sort='random' is not one of"),
    ("limit=0", "limit must be 1..500"),
    ("offset=x", "offset='x' is not an integer"),
])
def test_bad_filter_values_are_422_naming_the_parameter(sqlite_url, query, fragment):
    response = client(sqlite_url).get(f"/api/items?{query}", headers=AUTH)
    assert response.status_code == 422 and fragment in response.json()["error"]


def test_hashed_predictions_are_listed_without_their_text(tmp_path):
    url = f"sqlite:///{tmp_path}/hashed.db"
    log_predictions(url, [[("private message", 0.6, "model-a")]], log_text="hash")
    item = client(url).get("/api/items", headers=AUTH).json()["items"][0]
    assert item["text"] is None and len(item["text_sha256"]) == 64


def test_token_comes_from_params_yaml_and_the_environment_overrides_it(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["feedback"]["review_token"] = "from-params-4f9c2a7e81d3"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    assert load_review_settings(params, {}).token == "from-params-4f9c2a7e81d3"
    overridden = load_review_settings(params, {"MODERATION_REVIEW_TOKEN": "from-env-0b6e93d5c27a",
                                               "MODERATION_DB_URL": "sqlite:///elsewhere.db"})
    assert overridden.token == "from-env-0b6e93d5c27a"
    assert overridden.db_url == "sqlite:///elsewhere.db"
    assert overridden.labels == LABELS


def test_expired_session_is_refused_with_403(sqlite_url):
    c = client(sqlite_url)
    c.cookies.set("review_session", make_session(TOKEN, "alice", now=time.time() - 13 * 3600))
    response = c.get("/api/items")
    assert response.status_code == 403 and "expired" in response.json()["error"]
