"""The review UI's second queue: training rows the validate stage's label_noise rule found
suspicious, kept or relabelled by a reviewer, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from service.review.app import create_app
from tests.feedback.conftest import TOKEN
from tests.feedback.test_review_api import AUTH, settings

SUSPICIOUS = [
    {"file": "data/train.csv", "line": 7, "id": "tw-5", "label": "not-offensive",
     "suggested": "offensive", "confidence": 0.97, "text": "you worthless clown"},
    {"file": "data/train.csv", "line": 3, "id": "tw-1", "label": "offensive",
     "suggested": "not-offensive", "confidence": 0.91, "text": "what a lovely morning"},
]


def validation_report(path: Path, suspicious: list[dict] = SUSPICIOUS) -> Path:
    """A reports/validation.json as the validate stage writes it (the parts the queue reads)."""
    path.write_text(json.dumps({"passed": True, "dataset_md5": "abc123", "label_noise": {
        "scored": True, "changed_rows": 40, "flagged": True, "flagged_by": ["out_of_fold"],
        "estimate": {"share": 0.125, "low": 0.05, "high": 0.24, "rows": 40, "wrong_rows": 5,
                     "scorer": "out_of_fold"},
        "suspicious": suspicious}}))
    return path


def queue_client(url: str, report: Path) -> TestClient:
    return TestClient(create_app(replace(settings(url), validation_report=report)))


@pytest.fixture
def report(tmp_path) -> Path:
    return validation_report(tmp_path / "validation.json")


def decide(c: TestClient, items: list[dict], headers: dict | None = None):
    return c.post("/api/label-decisions", headers=headers or AUTH, json={"items": items})


def test_queue_lists_the_estimate_and_the_suspicious_rows_of_the_validation_report(
        db_url, report):
    response = queue_client(db_url, report).get("/api/label-queue", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["estimate"]["share"] == 0.125 and body["estimate"]["low"] == 0.05
    assert body["estimate"]["high"] == 0.24 and body["flagged"] is True
    assert [(i["id"], i["line"], i["text"], i["label"], i["suggested"], i["review"])
            for i in body["items"]] == [
        ("tw-5", 7, "you worthless clown", "not-offensive", "offensive", None),
        ("tw-1", 3, "what a lovely morning", "offensive", "not-offensive", None)]


def test_relabel_and_keep_are_stored_with_the_reviewer(db_url, report):
    c = queue_client(db_url, report)
    response = decide(c, [{"id": "tw-5", "label": "offensive"},
                          {"id": "tw-1", "label": "offensive"}])
    assert response.status_code == 200, response.text
    assert response.json() == {"saved": 2, "reviewer": "alice"}
    reviews = {i["id"]: i["review"] for i in c.get("/api/label-queue", headers=AUTH)
               .json()["items"]}
    assert reviews["tw-5"]["action"] == "changed" and reviews["tw-5"]["label"] == "offensive"
    assert reviews["tw-1"]["action"] == "kept" and reviews["tw-1"]["reviewer"] == "alice"
    assert reviews["tw-5"]["reviewed_at"].endswith("Z")
    # the latest decision wins, with its reviewer
    decide(c, [{"id": "tw-5", "label": "not-offensive"}],
           {"Authorization": f"Bearer {TOKEN}", "X-Reviewer": "bob"})
    review = c.get("/api/label-queue", headers=AUTH).json()["items"][0]["review"]
    assert (review["label"], review["action"], review["reviewer"]) == \
        ("not-offensive", "kept", "bob")


def test_a_decision_on_a_row_that_is_not_in_the_queue_or_with_a_bad_label_is_refused(
        db_url, report):
    c = queue_client(db_url, report)
    unknown = decide(c, [{"id": "tw-5", "label": "offensive"},
                         {"id": "tw-99", "label": "offensive"}])
    assert unknown.status_code == 404 and "items[1].id" in unknown.json()["error"]
    bad = decide(c, [{"id": "tw-5", "label": "spam"}])
    assert bad.status_code == 422 and "'spam'" in bad.json()["error"]
    assert all(i["review"] is None for i in c.get("/api/label-queue", headers=AUTH)
               .json()["items"])  # all or nothing


def test_a_decision_is_not_shown_for_a_row_whose_text_changed_in_a_later_report(tmp_path):
    url = f"sqlite:///{tmp_path}/log.db"
    report = validation_report(tmp_path / "validation.json")
    decide(queue_client(url, report), [{"id": "tw-5", "label": "offensive"}])
    validation_report(report, [SUSPICIOUS[0] | {"text": "another text under the same id"}])
    item = queue_client(url, report).get("/api/label-queue", headers=AUTH).json()["items"][0]
    assert item["review"] is None


def test_missing_validation_report_is_a_404_naming_the_file_and_the_stage(tmp_path):
    c = queue_client(f"sqlite:///{tmp_path}/log.db", tmp_path / "nowhere.json")
    response = c.get("/api/label-queue", headers=AUTH)
    assert response.status_code == 404
    assert "nowhere.json does not exist" in response.json()["error"]
    assert "validate" in response.json()["error"]


def test_a_report_whose_suspicious_rows_lack_fields_is_a_422_naming_the_row(tmp_path):
    report = validation_report(tmp_path / "validation.json",
                               [SUSPICIOUS[0], {"line": 3, "text": "no id or label"}])
    response = queue_client(f"sqlite:///{tmp_path}/log.db", report).get("/api/label-queue",
                                                                         headers=AUTH)
    assert response.status_code == 422
    assert "label_noise.suspicious[1]" in response.json()["error"]


def test_label_queue_needs_the_token(tmp_path, report):
    c = queue_client(f"sqlite:///{tmp_path}/log.db", report)
    assert c.get("/api/label-queue").status_code == 401
    assert c.post("/api/label-decisions", json={"items": []}).status_code == 401


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json", "Origin": "http://evil.example"},
    {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
    {"Content-Type": "text/plain"},
    {"Content-Type": "application/x-www-form-urlencoded"},
], ids=["other-origin", "cross-site", "text-plain", "form"])
def test_cross_origin_or_non_json_decisions_are_refused_and_not_stored(tmp_path, report,
                                                                         headers):
    c = queue_client(f"sqlite:///{tmp_path}/log.db", report)
    login = c.post("/login", data={"token": TOKEN, "reviewer": "alice"}, follow_redirects=False)
    assert login.status_code == 303
    body = json.dumps({"items": [{"id": "tw-5", "label": "offensive"}]})
    response = c.post("/api/label-decisions", content=body, headers=headers)
    assert response.status_code in (403, 415)
    assert response.status_code == (415 if "Origin" not in headers
                                    and "Sec-Fetch-Site" not in headers else 403)
    assert all(i["review"] is None for i in c.get("/api/label-queue").json()["items"])
    same = c.post("/api/label-decisions", content=body,
                  headers={"Content-Type": "application/json", "Origin": "http://testserver"})
    assert same.status_code == 200
