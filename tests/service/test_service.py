"""The real BentoML service: contract responses, every bad input, overload, log and shadow."""

from __future__ import annotations

import http.client
import json
import re
import socket
import sqlite3
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

from loadtests.serving import http_status
from service.shadow import remote_scorer
from tests.conftest import wait_until
from tests.service.conftest import (
    BODY_TIMEOUT_S,
    MAX_BODY,
    MAX_CHARS,
    MAX_CONCURRENCY,
    MAX_TEXTS,
)


def post(base: str, body: bytes, headers: dict | None = None) -> tuple[int, dict, dict]:
    u = urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("POST", "/classify", body=body,
                 headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(payload)


def classify(base: str, texts, headers: dict | None = None):
    return post(base, json.dumps({"texts": texts}).encode(), headers)


def metrics_text(base: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
        return resp.read().decode()


def test_classify_returns_label_scores_and_version_per_text_with_headers(server):
    status, headers, body = classify(server["base"], ["you are an idiot", "lovely weather"])
    assert status == 200
    version = body["model_version"]
    assert version.startswith("transformer-") and headers["x-model-version"] == version
    assert len(headers["x-request-id"]) >= 16
    assert len(body["predictions"]) == 2
    for p in body["predictions"]:
        assert p["label"] in ("not-offensive", "offensive") and p["model_version"] == version
        assert set(p["scores"]) == {"not-offensive", "offensive"}
        assert abs(sum(p["scores"].values()) - 1) < 1e-4


def test_bentomls_openapi_describes_the_classify_request(server):
    with urllib.request.urlopen(server["base"] + "/docs.json", timeout=10) as docs:
        spec = json.load(docs)
    body = spec["paths"]["/classify"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["required"] == ["texts"]
    assert body["schema"]["properties"]["texts"]["items"] == {"type": "string"}


def test_callers_request_id_is_echoed_and_logged_with_each_prediction(server):
    status, headers, _ = classify(server["base"], ["first", "second", "third"],
                                  {"X-Request-Id": "caller-abc-123"})
    assert status == 200 and headers["x-request-id"] == "caller-abc-123"

    def rows():
        with sqlite3.connect(server["db"]) as conn:
            return conn.execute("SELECT position, text, label, model_version, latency_ms FROM "
                                "predictions WHERE client_request_id = 'caller-abc-123' "
                                "ORDER BY position").fetchall()

    logged = wait_until(lambda: len(rows()) == 3 and rows(), timeout=10)
    assert [r[:2] for r in logged] == [(0, "first"), (1, "second"), (2, "third")]
    assert all(r[3].startswith("transformer-") and r[4] > 0 for r in logged)


def test_shadow_model_scores_each_request_and_agreement_is_exported(server):
    status, _, _ = classify(server["base"], ["shadow me", "and me"], {"X-Request-Id": "shadow-1"})
    assert status == 200

    def shadow_rows():
        with sqlite3.connect(server["db"]) as conn:
            return conn.execute("SELECT shadow_label, shadow_model_version FROM predictions "
                                "WHERE client_request_id = 'shadow-1' AND shadow_label IS NOT NULL"
                                ).fetchall()

    rows = wait_until(lambda: len(shadow_rows()) == 2 and shadow_rows(), timeout=15)
    assert rows and all(r[1].startswith("baseline-") for r in rows)
    text = metrics_text(server["base"])
    agreed = [line for line in text.splitlines()
              if line.startswith("moderation_shadow_predictions_total{")]
    assert agreed and sum(float(line.split()[-1]) for line in agreed) >= 2


def test_probes_and_contract_metric_names_are_served(server):
    base = server["base"]
    assert http_status(base + "/livez") == 200 and http_status(base + "/readyz") == 200
    classify(base, ["warm up the counters"])
    text = metrics_text(base)
    for name in ("moderation_requests_total", "moderation_request_duration_seconds_bucket",
                 "moderation_batch_size_bucket", "moderation_predictions_total",
                 "moderation_score_bucket", "moderation_log_written_total",
                 "moderation_log_dropped_total", "moderation_shadow_dropped_total"):
        assert f"\n{name}" in text, name
    assert 'moderation_requests_total{code="200",route="classify"}' in text


def test_service_metrics_carry_no_label_prometheus_sets_on_the_target(server):
    """A label named like a target label (endpoint, pod, ...) is renamed exported_<name> by the
    scrape, and every query on it comes back empty."""
    from service.metrics import TARGET_LABELS

    text = metrics_text(server["base"])
    series = [line for line in text.splitlines() if line.startswith("moderation_")]
    assert series
    used = {name for line in series for name in re.findall(r'[{,](\w+)="', line)}
    assert not used & TARGET_LABELS, used & TARGET_LABELS


def test_remote_shadow_scorer_reads_another_instance_of_this_service(server):
    labels, version = remote_scorer(server["base"])(["one", "two", "three"])
    assert len(labels) == 3 and version.startswith("transformer-")


def test_local_shadow_scores_on_a_lower_priority_thread_than_the_primary():
    """Linux schedules threads by their own nice value: the shadow's forward passes yield."""
    import os
    import threading

    from service.shadow import SHADOW_NICENESS, ShadowEvaluator

    seen, done = [], threading.Event()

    def score(texts):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return ["x"] * len(texts), "v"

    evaluator = ShadowEvaluator(score=score, on_result=lambda *a: done.set(),
                                on_dropped=lambda: None).start()
    evaluator.submit("r1", ["a"], ["x"])
    assert done.wait(5)
    evaluator.close()
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert seen == [min(base + SHADOW_NICENESS, 19)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


BAD_INPUTS = {
    "missing_field": (b'{"text": ["hello"]}', 422, "texts"),
    "wrong_type_texts": (b'{"texts": "hello"}', 422, "texts"),
    "wrong_type_item": (b'{"texts": ["ok", 5]}', 422, "texts[1]"),
    "empty_list": (b'{"texts": []}', 422, "texts"),
    "empty_text": (b'{"texts": ["fine", "   "]}', 422, "texts[1]"),
    "too_long": (json.dumps({"texts": ["a" * (MAX_CHARS + 1)]}).encode(), 413, "texts[0]"),
    "too_many": (json.dumps({"texts": ["x"] * (MAX_TEXTS + 1)}).encode(), 413, "texts"),
    "invalid_json": (b'{"texts": ["unterminated"', 400, "body"),
    "invalid_utf8": (b'{"texts": ["\xff\xfe broken"]}', 400, "body"),
    "body_too_large": (json.dumps({"texts": ["b" * (MAX_BODY + 10)]}).encode(), 413, "body"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_a_4xx_json_error_naming_the_problem(server, case):
    body, expected_status, field = BAD_INPUTS[case]
    status, _, payload = post(server["base"], body)
    assert status == expected_status
    assert payload["error"] == case.removesuffix("_texts").removesuffix("_item")
    assert payload["field"] == field and payload["detail"]


def test_oversized_chunked_body_is_refused_without_a_content_length(server):
    u = urlparse(server["base"])
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    chunks = (b'{"texts": ["' + b"c" * 1000 + b'"]}' for _ in range(MAX_BODY // 1000 + 2))
    conn.request("POST", "/classify", body=chunks, encode_chunked=True,
                 headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"] == "body_too_large"


def hold_request_open(base: str) -> socket.socket:
    """A /classify request whose body never finishes (slowloris)."""
    u = urlparse(base)
    sock = socket.create_connection((u.hostname, u.port), timeout=10)
    sock.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"texts\": [")
    return sock


def test_slow_body_senders_cannot_hold_the_concurrency_slots(server):
    base = server["base"]
    held = [hold_request_open(base) for _ in range(4 * MAX_CONCURRENCY)]
    try:
        time.sleep(0.5)
        status, _, _ = classify(base, ["arrives while the slow senders dribble"])
        assert status == 200
        held[0].settimeout(BODY_TIMEOUT_S + 10)
        answer = b""
        while b"body_timeout" not in answer and (chunk := held[0].recv(4096)):
            answer += chunk  # headers and body may arrive in separate packets
        assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout" in answer
    finally:
        for sock in held:
            sock.close()


def test_a_lone_surrogate_fails_only_its_own_requests_among_concurrent_valid_ones(server):
    surrogate = b'{"texts": ["hello \\ud800 world"]}'
    valid = json.dumps({"texts": ["a perfectly normal text", "and another"]}).encode()
    rounds = [[surrogate] + [valid] * (MAX_CONCURRENCY - 1) for _ in range(8)]
    with ThreadPoolExecutor(MAX_CONCURRENCY) as pool:
        results = [list(pool.map(lambda b: post(server["base"], b), bodies))
                   for bodies in rounds]
    assert [(s, p["error"], p["field"]) for (s, _, p), *_ in results] == \
        [(422, "invalid_text", "texts[0]")] * len(rounds)
    assert [s for _, *valid_ones in results for s, _, _ in valid_ones] == \
        [200] * (len(rounds) * (MAX_CONCURRENCY - 1))


PARSER_BOMBS = {
    "deep-list": b'{"texts": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    "deep-object": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "huge-integer": b'{"texts": [' + b"9" * 5_000 + b"]}",
}


@pytest.mark.parametrize("case", sorted(PARSER_BOMBS))
def test_parser_bombs_get_a_json_400_within_a_second(server, case):
    body = PARSER_BOMBS[case]
    assert len(body) <= MAX_BODY, "the body limit would answer before the parser"
    started = time.perf_counter()
    status, _, payload = post(server["base"], body)
    assert status == 400 and payload["error"] == "invalid_json"
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("headers", [{"X-Big": "a" * 65_536},
                                     {f"X-Many-{i}": "1" for i in range(200)}],
                         ids=["large", "many"])
def test_oversized_headers_get_a_json_431(server, headers):
    status, _, payload = classify(server["base"], ["hi"], headers)
    assert status == 431 and payload["error"] == "headers_too_large"
