"""Graceful shutdown: SIGTERM under load loses no acknowledged prediction (PostgreSQL log)."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request

from service.predlog import connect
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
        logged = dict(conn.execute("SELECT request_id, COUNT(*) FROM predictions "
                                   "GROUP BY request_id").fetchall())
    finally:
        conn.close()
    missing = {rid: n for rid, n in acknowledged.items() if logged.get(rid) != n}
    assert not missing, f"{len(missing)} acknowledged requests not fully logged"
