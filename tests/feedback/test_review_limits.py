"""The review UI against guessing and misdirection: failed-login limits per client and in total,
a minimum token strength at start, the Host allow-list (DNS rebinding), a corrupt validation
report, and repeated or conflicting ids in one request; every error JSON with the security
headers."""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import replace
from urllib.parse import urlparse

import pytest
import yaml
from starlette.testclient import TestClient

from pipelines.runtime.params import ParamsError
from service.review.app import create_app
from service.review.auth import LoginThrottle, token_weakness
from service.review.settings import load_review_settings
from tests.conftest import ROOT, run
from tests.feedback.conftest import TOKEN, log_predictions
from tests.feedback.test_label_queue import SUSPICIOUS, validation_report
from tests.feedback.test_review_api import AUTH, settings
from tests.feedback.test_review_hostile import SECURITY_HEADERS
from tests.service.test_http_guard import parse_response, raw_exchange, read_all

PER_CLIENT, TOTAL = 3, 5
WRONG = {"Authorization": "Bearer not-the-token-at-all", "X-Reviewer": "mallory"}


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path}/log.db"
    log_predictions(url, [[("you idiot", 0.92, "model-a"), ("lovely day", 0.08, "model-a")]])
    return url


def limited_app(url: str, **overrides):
    return create_app(replace(settings(url), max_failed_logins_per_client=PER_CLIENT,
                              max_failed_logins=TOTAL, failed_login_window_s=60, **overrides))


def assert_json_error_with_security_headers(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert all(h in response.headers for h in SECURITY_HEADERS), dict(response.headers)
    return response.json()


# -- failed logins -------------------------------------------------------------------------

def test_wrong_bearer_tokens_beyond_the_per_client_limit_get_429_with_retry_after(url):
    app = limited_app(url)
    mallory = TestClient(app, client=("10.0.0.66", 4000))
    assert [mallory.get("/api/items", headers=WRONG).status_code
            for _ in range(PER_CLIENT)] == [403] * PER_CLIENT
    refused = mallory.get("/api/items", headers=WRONG)
    body = assert_json_error_with_security_headers(refused, 429)
    assert "too many wrong review tokens" in body["error"]
    assert 0 < int(refused.headers["retry-after"]) <= 60
    # Even the right token is not checked while the client is locked out: guessing stops.
    assert mallory.get("/api/items", headers=AUTH).status_code == 429
    # Another client is not locked out by this one's failures.
    assert TestClient(app, client=("10.0.0.7", 4000)).get("/api/items",
                                                          headers=AUTH).status_code == 200


def test_wrong_login_form_tokens_count_and_the_login_page_says_when_to_retry(url):
    c = TestClient(limited_app(url), client=("10.0.0.66", 4000))
    form = {"token": "guess", "reviewer": "mallory"}
    assert [c.post("/login", data=form).status_code for _ in range(PER_CLIENT)] == [403] * 3
    refused = c.post("/login", data={"token": TOKEN, "reviewer": "mallory"},
                     follow_redirects=False)
    assert refused.status_code == 429 and "retry-after" in refused.headers
    assert "too many wrong review tokens" in refused.text.lower()
    assert all(h in refused.headers for h in SECURITY_HEADERS)


def test_failures_from_many_clients_reach_the_global_limit(url):
    app = limited_app(url)
    for i in range(TOTAL):  # one wrong token from each of TOTAL addresses
        c = TestClient(app, client=(f"10.0.1.{i}", 4000))
        assert c.get("/api/items", headers=WRONG).status_code == 403
    fresh = TestClient(app, client=("10.0.2.1", 4000))
    assert_json_error_with_security_headers(fresh.get("/api/items", headers=WRONG), 429)


def test_a_logged_in_reviewer_keeps_working_while_token_checks_are_locked(url):
    app = limited_app(url)
    reviewer = TestClient(app, client=("10.0.0.7", 4000))
    assert reviewer.post("/login", data={"token": TOKEN, "reviewer": "alice"},
                         follow_redirects=False).status_code == 303
    for i in range(TOTAL + 1):
        TestClient(app, client=(f"10.0.1.{i}", 4000)).get("/api/items", headers=WRONG)
    assert reviewer.get("/api/items").status_code == 200


def test_the_throttle_forgets_failures_once_the_window_has_passed():
    now = [1000.0]
    throttle = LoginThrottle(per_client=2, total=3, window_s=60, clock=lambda: now[0])
    throttle.failed("a")
    now[0] += 10
    throttle.failed("a")
    assert throttle.retry_after("a") == 50 and throttle.retry_after("b") is None
    throttle.failed("b")
    assert throttle.retry_after("c") == 50  # the global limit: 3 failures in the window
    now[0] += 50.5
    assert throttle.retry_after("a") is None and throttle.retry_after("c") is None
    now[0] += 60
    assert throttle.retry_after("d") is None
    assert throttle.by_client == {} and not throttle.everyone  # memory is given back


# -- token strength ------------------------------------------------------------------------

@pytest.mark.parametrize(("token", "reason"), [
    ("x", "1 characters long"),
    ("secret", "6 characters long"),
    ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "too predictable"),
    ("abababababababababababababababab", "too predictable"),
    ("passwordpassword", "too predictable"),
], ids=["one-char", "short-word", "repeated", "alternating", "doubled-word"])
def test_weak_review_tokens_are_refused_at_start_naming_the_variable(tmp_path, token, reason):
    with pytest.raises(ParamsError) as e:
        load_review_settings(ROOT / "params.yaml", {"MODERATION_REVIEW_TOKEN": token})
    assert "MODERATION_REVIEW_TOKEN" in str(e.value) and reason in str(e.value)
    assert "openssl rand -hex 16" in str(e.value)


def test_random_tokens_and_passphrases_are_strong_enough():
    for token in ("9f86d081884c7d659a2feaa0c55ad015", "correct-horse-battery-staple", TOKEN):
        assert token_weakness(token) is None, token


def test_a_weak_token_in_params_yaml_names_the_file_and_key(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["feedback"]["review_token"] = "hunter2"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"params.yaml: feedback.review_token is 7 characters"):
        load_review_settings(params, {})


def test_the_review_ui_does_not_start_with_a_one_character_token():
    result = run([sys.executable, "-m", "pipelines", "review"], ROOT, check=False,
                 MODERATION_REVIEW_TOKEN="x")
    assert result.returncode == 2 and "MODERATION_REVIEW_TOKEN is 1 characters" in result.stderr


# -- Host allow-list -----------------------------------------------------------------------

@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:3001", "127.0.0.1.nip.io",
                                  "", "[::1"], ids=["rebound-name", "with-port", "lookalike",
                                                    "empty", "broken"])
def test_requests_for_another_host_name_are_refused(url, host):
    c = TestClient(create_app(settings(url)))
    response = c.get("/api/items", headers={**AUTH, "Host": host})
    body = assert_json_error_with_security_headers(response, 400)
    assert "MODERATION_REVIEW_ALLOWED_HOSTS" in body["error"]
    assert c.post("/login", data={"token": TOKEN, "reviewer": "a"},
                  headers={"Host": host}).status_code == 400


@pytest.mark.parametrize("host", ["127.0.0.1:3001", "localhost", "LOCALHOST:3001", "[::1]:3001"])
def test_loopback_names_are_answered_by_default(url, host):
    c = TestClient(create_app(replace(settings(url), allowed_hosts=("127.0.0.1", "localhost",
                                                                    "::1"))))
    assert c.get("/api/items", headers={**AUTH, "Host": host}).status_code == 200


def test_probes_answer_whatever_host_the_kubelet_sends(url):
    c = TestClient(create_app(settings(url)))
    assert c.get("/livez", headers={"Host": "10.1.2.3:3001"}).status_code == 200
    assert c.get("/readyz", headers={"Host": "10.1.2.3:3001"}).status_code == 200


def test_allowed_hosts_come_from_the_environment_over_params_yaml():
    env = {"MODERATION_REVIEW_TOKEN": TOKEN,
           "MODERATION_REVIEW_ALLOWED_HOSTS": " Review.Example.org , 127.0.0.1 "}
    assert load_review_settings(ROOT / "params.yaml", env).allowed_hosts == (
        "review.example.org", "127.0.0.1")
    assert load_review_settings(ROOT / "params.yaml", {"MODERATION_REVIEW_TOKEN": TOKEN}
                                ).allowed_hosts == ("127.0.0.1", "localhost", "::1")
    with pytest.raises(ParamsError, match="MODERATION_REVIEW_ALLOWED_HOSTS names no host"):
        load_review_settings(ROOT / "params.yaml", {**env, "MODERATION_REVIEW_ALLOWED_HOSTS": ","})


# -- a corrupt validation report -----------------------------------------------------------

CORRUPT_REPORTS = {
    "deep-nesting": '{"label_noise": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "deep-in-estimate": json.dumps({"label_noise": {"suspicious": []}})[:-2]
    + ', "estimate": ' + "[" * 50_000 + "]" * 50_000 + "}}",
    "deep-in-a-row": '{"label_noise": {"suspicious": [{"id": "a", "text": "t", "label": "x", '
                     '"suggested": "y", "line": ' + "[" * 50_000 + "]" * 50_000 + "}]}}",
    "estimate-a-list": json.dumps({"label_noise": {"estimate": [1, 2], "suspicious": []}}),
    "line-a-string": json.dumps({"label_noise": {"suspicious": [SUSPICIOUS[0] | {"line": "7"}]}}),
    "text-an-object": json.dumps({"label_noise": {"suspicious": [SUSPICIOUS[0]
                                                                 | {"text": {"a": 1}}]}}),
    "flagged-a-string": json.dumps({"label_noise": {"flagged": "yes", "suspicious": []}}),
    "huge-integer": '{"label_noise": {"changed_rows": ' + "9" * 5000 + "}}",
    "not-utf8": b"\xff\xfe{}".decode("latin-1"),
    "a-list": "[]",
}


@pytest.mark.parametrize("case", sorted(CORRUPT_REPORTS))
def test_a_corrupt_validation_report_is_a_json_4xx_with_the_security_headers(tmp_path, url, case):
    report = tmp_path / "validation.json"
    report.write_text(CORRUPT_REPORTS[case], encoding="latin-1")
    c = TestClient(create_app(replace(settings(url), validation_report=report)),
                   raise_server_exceptions=False)
    body = assert_json_error_with_security_headers(c.get("/api/label-queue", headers=AUTH), 422)
    assert str(report) in body["error"]
    decision = c.post("/api/label-decisions", headers=AUTH,
                      json={"items": [{"id": "tw-5", "label": "offensive"}]})
    assert_json_error_with_security_headers(decision, 422)


def test_a_report_from_a_training_file_without_ids_says_to_add_the_id_column(tmp_path, url):
    report = validation_report(tmp_path / "validation.json",
                               [SUSPICIOUS[0] | {"id": None}])
    c = TestClient(create_app(replace(settings(url), validation_report=report)))
    error = c.get("/api/label-queue", headers=AUTH).json()["error"]
    assert "label_noise.suspicious[0] has no id" in error
    assert "Add an `id` column" in error and "data.train_file" in error


def test_an_unexpected_failure_is_a_json_500_with_the_security_headers(url):
    app = create_app(settings(url))

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    app.state.store.counts = broken
    response = TestClient(app, raise_server_exceptions=False).get("/api/counts", headers=AUTH)
    body = assert_json_error_with_security_headers(response, 500)
    assert "database went away" not in body["error"]


# -- repeated and conflicting ids ----------------------------------------------------------

def test_five_hundred_copies_of_one_correction_count_once(url):
    c = TestClient(create_app(settings(url)))
    response = c.post("/api/corrections", headers=AUTH,
                      json={"items": [{"id": 1, "label": "offensive"}] * 500})
    assert response.status_code == 200 and response.json()["saved"] == 1
    assert response.json()["all"]["reviewed"] == 1


def test_conflicting_labels_for_one_prediction_are_a_422_naming_the_id(url):
    c = TestClient(create_app(settings(url)))
    response = c.post("/api/corrections", headers=AUTH, json={"items": [
        {"id": 2, "label": "offensive"}, {"id": 1, "label": "offensive"},
        {"id": 1, "label": "not-offensive"}]})
    body = assert_json_error_with_security_headers(response, 422)
    assert "prediction id 1" in body["error"] and "items[1]" in body["error"]
    assert "items[2]" in body["error"]
    assert c.get("/api/counts", headers=AUTH).json()["all"]["reviewed"] == 0  # nothing saved


def test_repeated_and_conflicting_label_decisions(tmp_path, url):
    report = validation_report(tmp_path / "validation.json")
    c = TestClient(create_app(replace(settings(url), validation_report=report)))
    same = c.post("/api/label-decisions", headers=AUTH,
                  json={"items": [{"id": "tw-5", "label": "offensive"}] * 500})
    assert same.status_code == 200 and same.json()["saved"] == 1
    conflict = c.post("/api/label-decisions", headers=AUTH, json={"items": [
        {"id": "tw-1", "label": "offensive"}, {"id": "tw-1", "label": "not-offensive"}]})
    body = assert_json_error_with_security_headers(conflict, 422)
    assert "training row id 'tw-1'" in body["error"]


# -- the request head, as for the service ---------------------------------------------------

def test_the_running_ui_closes_slow_request_heads_and_refuses_huge_ones(review_ui, url, tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["serve"] |= {"header_timeout_s": 1, "max_header_bytes": 4096}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    port = urlparse(review_ui(url, params=tmp_path / "params.yaml")).port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(b"GET /api/items HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # then nothing
        status, headers, body = parse_response(read_all(slow))
    assert status == 408 and "not received within 1 s" in body["error"]
    assert all(h in headers for h in SECURITY_HEADERS)
    status, headers, body = raw_exchange(port, b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                         b"X-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
    assert status == 431 and "4096 bytes" in body["error"]
    assert all(h in headers for h in SECURITY_HEADERS)
