"""Graceful shutdown: SIGTERM under load loses no acknowledged prediction (PostgreSQL log)."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

from service.predlog import connect, create_schema
from tests.service.server import running_service


def load_until_stopped(base: str, stop: threading.Event, acknowledged: dict[str, int],
                       worker: int) -> None:
    """Send small batches until stopped; record (request id, texts) of every 200 answer."""
    for i in range(10_000):
        if stop.is_set():
            return
        texts = [f"worker {worker} text {i} {j}" for j in range(1 + i % 3)]
        req = urllib.request.Request(base + "/classify", json.dumps({"texts": texts}).encode(),
                                     {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                if resp.status == 200:
                    acknowledged[resp.headers["X-Request-Id"]] = len(texts)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            if stop.is_set():
                return
            time.sleep(0.05)


def test_sigterm_under_load_keeps_every_acknowledged_prediction(smoke_repo, postgres_url,
                                                                tmp_path):
    settings = {"model_dir": str(smoke_repo / "models/candidate"), "db_url": postgres_url}
    acknowledged: dict[str, int] = {}
    stop = threading.Event()
    create_schema(postgres_url)  # the migrate Job's step; the service never runs DDL on PostgreSQL
    with running_service(smoke_repo, settings, tmp_path / "server.log") as (base, proc):
        threads = [threading.Thread(target=load_until_stopped, args=(base, stop, acknowledged, w))
                   for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(60)
        stop.set()
        for t in threads:
            t.join(15)
    assert exit_code == 0, (tmp_path / "server.log").read_text()[-3000:]
    assert len(acknowledged) > 10, "the load generator got too few answers to prove anything"
    conn = connect(postgres_url)
    try:
        # The answer's X-Request-Id is the caller's id, stored beside the server's log key.
        logged = dict(conn.execute("SELECT client_request_id, COUNT(*) FROM predictions "
                                   "GROUP BY client_request_id").fetchall())
    finally:
        conn.close()
    missing = {rid: n for rid, n in acknowledged.items() if logged.get(rid) != n}
    assert not missing, f"{len(missing)} acknowledged requests not fully logged"


def send_until_told_to_go(base: str, outcomes: dict[str, int], lock: threading.Lock) -> None:
    """Like a client behind a load balancer: send until this instance says it is going
    (503 or connection refused), counting how each request ended."""
    u = urlparse(base)
    body = json.dumps({"texts": [f"a text long enough to keep the model busy {i}" * 4
                                 for i in range(8)]}).encode()
    for _ in range(10_000):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        try:
            conn.connect()
        except OSError:
            outcome = "refused"
        else:
            try:
                conn.request("POST", "/classify", body, {"Content-Type": "application/json"})
                outcome = str(conn.getresponse().status)
            except (http.client.HTTPException, OSError):
                outcome = "sent_but_unanswered"
            finally:
                conn.close()
        with lock:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome in ("refused", "503", "sent_but_unanswered"):
            return


def test_sigterm_answers_every_received_request_before_exiting(smoke_repo, tmp_path):
    settings = {"model_dir": str(smoke_repo / "models/candidate"),
                "db_url": f"sqlite:///{tmp_path}/predictions.db", "max_concurrency": "64",
                "max_queue_ms": "60000", "drain_timeout_s": "8"}
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    with running_service(smoke_repo, settings, tmp_path / "server.log") as (base, proc):
        clients = [threading.Thread(target=send_until_told_to_go, args=(base, outcomes, lock))
                   for _ in range(16)]
        for c in clients:
            c.start()
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(60)
        for c in clients:
            c.join(30)
    log = (tmp_path / "server.log").read_text()
    assert exit_code == 0, log[-3000:]
    assert outcomes.get("200", 0) > 16, outcomes
    assert "sent_but_unanswered" not in outcomes, outcomes
    assert "flush_prediction_log" in log


def test_a_client_connecting_after_sigterm_gets_a_503_json_not_a_reset(smoke_repo, tmp_path):
    drain_s = 6
    db = tmp_path / "predictions.db"
    settings = {"model_dir": str(smoke_repo / "models/candidate"), "db_url": f"sqlite:///{db}",
                "drain_timeout_s": str(drain_s)}
    acknowledged: dict[str, int] = {}
    late: list[tuple[float, int, str, dict]] = []
    with running_service(smoke_repo, settings, tmp_path / "server.log") as (base, proc):
        u = urlparse(base)
        for i in range(5):
            status, headers, _ = post_texts(u, [f"before sigterm {i}", "second text"])
            assert status == 200
            acknowledged[headers["x-request-id"]] = 2
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        for wait_s in (1.0, drain_s / 2):  # nothing is in flight any more by then
            time.sleep(max(0.0, signalled + wait_s - time.monotonic()))
            status, headers, payload = post_texts(u, ["arrives after sigterm"])
            late.append((time.monotonic() - signalled, status, headers.get("connection"),
                         payload))
        exit_code = proc.wait(drain_s + 30)
        stopped_after = time.monotonic() - signalled
    log = (tmp_path / "server.log").read_text()
    assert exit_code == 0, log[-3000:]
    for _, status, connection, payload in late:
        assert (status, connection, payload["error"]) == (503, "close", "shutting_down"), late
    assert drain_s <= stopped_after < drain_s + 25, stopped_after
    conn = connect(f"sqlite:///{db}")
    try:
        logged = dict(conn.execute("SELECT client_request_id, COUNT(*) FROM predictions "
                                   "GROUP BY client_request_id").fetchall())
    finally:
        conn.close()
    assert {rid: logged.get(rid) for rid in acknowledged} == acknowledged


def post_texts(u, texts: list[str]) -> tuple[int, dict[str, str], dict]:
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("POST", "/classify", json.dumps({"texts": texts}).encode(),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(resp.read())
    finally:
        conn.close()
