"""The connection layer under hostile clients, on a real uvicorn socket on 127.0.0.1 (the gateway
in front of a stand-in model): slow and huge request heads, a flood of slow connections, and
requests the HTTP parser refuses, each answered in the JSON contract."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

import psutil
import pytest
import uvicorn

from loadtests.serving import http_status
from service import runtime as runtime_state
from service.batcher import GreedyBatcher
from service.http_guard import GuardedHttpToolsProtocol, HeadLimits
from tests.conftest import ROOT, free_port, wait_until
from tests.service.conftest import HEADER_TIMEOUT_S as SERVICE_HEADER_TIMEOUT_S
from tests.service.conftest import MAX_PENDING_CONNECTIONS
from tests.service.test_gateway import gateway, stand_in_runtime, tokenizer_like_predict

HEADER_TIMEOUT_S, MAX_HEADER_BYTES, MAX_PENDING = 1.5, 4096, 20
SLOW_HEAD = b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # then nothing


@contextmanager
def guarded_server(**limits) -> Iterator[int]:
    """uvicorn with the guarded protocol in a thread; yields its port."""
    protocol = type("Protocol", (GuardedHttpToolsProtocol,), {
        "limits": HeadLimits(**{"header_timeout_s": HEADER_TIMEOUT_S,
                                "max_header_bytes": MAX_HEADER_BYTES,
                                "max_pending_connections": MAX_PENDING, **limits}),
        "waiting": {}})
    runtime_state.set_current(stand_in_runtime(
        GreedyBatcher(tokenizer_like_predict(), max_batch_size=64)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(gateway(), host="127.0.0.1", port=port, http=protocol,
                                           loop="asyncio", log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started, 10), "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        runtime_state.set_current(None)


def raw_exchange(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict, dict]:
    """Send raw bytes, read until the server closes; (status, headers, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        # the server may answer and close before everything was sent
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        return parse_response(read_all(s))


def read_all(s: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw: bytes) -> tuple[int, dict, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def classify_request(text: str = "a normal client") -> bytes:
    body = json.dumps({"texts": [text]}).encode()
    return (b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body


def slow_connections(port: int, n: int) -> list[socket.socket]:
    sockets = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(SLOW_HEAD)
        sockets.append(s)
    return sockets


def test_a_request_head_that_stops_arriving_gets_a_408_and_is_closed():
    with guarded_server() as port:
        (s,) = slow_connections(port, 1)
        started = time.monotonic()
        with s:
            status, headers, payload = parse_response(read_all(s))
        waited = time.monotonic() - started
    assert (status, payload["error"], headers["connection"]) == (408, "header_timeout", "close")
    assert HEADER_TIMEOUT_S - 0.2 < waited < HEADER_TIMEOUT_S + 3


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline():
    with guarded_server() as port, socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(HEADER_TIMEOUT_S + 5)
        assert s.recv(100) == b""


def test_a_flood_of_slow_heads_closes_the_oldest_and_normal_clients_are_still_answered():
    flood = 3 * MAX_PENDING
    with guarded_server() as port:
        sockets = slow_connections(port, flood)
        try:
            status, _, payload = raw_exchange(port, classify_request())
            assert status == 200 and payload["predictions"], payload
            # The oldest were closed to make room; the newest are still waiting.
            for s in sockets[:flood - MAX_PENDING - 1]:
                s.settimeout(5)
                assert parse_response(read_all(s))[0] == 408
            # and at the deadline every one is closed
            for s in sockets[flood - MAX_PENDING:]:
                s.settimeout(HEADER_TIMEOUT_S + 5)
                assert read_all(s).startswith(b"HTTP/1.1 408")
        finally:
            for s in sockets:
                s.close()


@pytest.mark.parametrize("size", [64 * 1024, 8 * 1024 * 1024], ids=["64KB", "8MB"])
def test_a_huge_header_is_refused_with_431_before_it_is_parsed(size):
    request = (b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * size
               + b"\r\n\r\n")
    with guarded_server() as port:
        started = time.monotonic()
        status, _, payload = raw_exchange(port, request)
        elapsed = time.monotonic() - started
        assert raw_exchange(port, classify_request())[0] == 200
    assert (status, payload["error"], payload["field"]) == (431, "headers_too_large", "headers")
    assert elapsed < 2.0


def test_concurrent_huge_headers_are_refused_while_normal_clients_get_answers():
    request = b"GET /livez HTTP/1.1\r\nX-Big: " + b"a" * (16 * 1024 * 1024) + b"\r\n\r\n"
    results: list[int] = []
    with guarded_server() as port:
        threads = [threading.Thread(target=lambda: results.append(raw_exchange(port, request)[0]))
                   for _ in range(4)]
        for t in threads:
            t.start()
        normal = [raw_exchange(port, classify_request(f"text {i}"))[0] for i in range(5)]
        for t in threads:
            t.join(30)
    assert results == [431] * 4 and normal == [200] * 5


def test_a_large_body_sent_with_its_head_in_one_write_is_not_mistaken_for_a_large_head():
    text = "x" * 150
    body = json.dumps({"texts": [text] * 8}).encode()
    assert len(body) < 4096 and len(body) + 200 > 1024
    with guarded_server(max_header_bytes=1024) as port:
        status, _, payload = raw_exchange(port, (
            b"POST /classify HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body)
    assert status == 200 and len(payload["predictions"]) == 8


MALFORMED = {
    "content-length-1e30": b"POST /classify HTTP/1.1\r\nHost: a\r\nContent-Length: 1"
                           + b"0" * 30 + b"\r\n\r\n",
    "bare-lf": b"POST /classify HTTP/1.1\nHost: a\nContent-Length: 2\n\n{}",
    "folded-header": b"POST /classify HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n"
                     b"Content-Length: 2\r\n\r\n{}",
    "space-before-colon": b"GET /livez HTTP/1.1\r\nHost : a\r\n\r\n",
    "two-content-lengths": b"POST /classify HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                           b"Content-Length: 3\r\n\r\n{}",
    "not-http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_requests_the_parser_refuses_get_the_json_error_contract(case):
    with guarded_server() as port:
        status, headers, payload = raw_exchange(port, MALFORMED[case])
    assert headers["content-type"] == "application/json" and "x-request-id" in headers
    assert (status, payload["error"], payload["field"]) == (400, "malformed_request", "request")
    assert payload["detail"].startswith("not a valid HTTP/1.1 request: ")


def test_the_bentoml_worker_runs_the_guard(server):
    """The same protections in the real service: BentoML's worker builds its uvicorn server with
    `http="auto"`, which service.http_guard.install() points at the guarded protocol."""
    port = urlparse(server["base"]).port
    flood = 2 * MAX_PENDING_CONNECTIONS
    sockets = slow_connections(port, flood)
    try:
        assert raw_exchange(port, classify_request())[0] == 200
        for s in sockets[:flood - MAX_PENDING_CONNECTIONS - 1]:  # closed to make room
            s.settimeout(5)
            assert parse_response(read_all(s))[:1] == (408,)
        for s in sockets[flood - MAX_PENDING_CONNECTIONS:]:  # closed at the deadline
            s.settimeout(SERVICE_HEADER_TIMEOUT_S + 5)
            assert read_all(s).startswith(b"HTTP/1.1 408")
    finally:
        for s in sockets:
            s.close()
    started = time.monotonic()
    big = b"GET /livez HTTP/1.1\r\nX-Big: " + b"a" * (8 * 1024 * 1024) + b"\r\n\r\n"
    status, _, payload = raw_exchange(port, big)
    assert (status, payload["error"]) == (431, "headers_too_large")
    assert time.monotonic() - started < 2.0
    status, _, payload = raw_exchange(port, MALFORMED["content-length-1e30"])
    assert (status, payload["error"]) == (400, "malformed_request")


SERVER_PROCESS = """
import sys, uvicorn
from service.http_guard import GuardedHttpToolsProtocol
from tests.service.test_gateway import gateway
uvicorn.run(gateway(), host="127.0.0.1", port=int(sys.argv[1]), http=GuardedHttpToolsProtocol,
            loop="asyncio", log_level="error", lifespan="off")
"""


def test_concurrent_64_mb_headers_leave_the_worker_memory_flat(tmp_path):
    """The guard in its own process, so its memory is measured apart from the senders'."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER_PROCESS, str(port)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert wait_until(lambda: http_status(f"http://127.0.0.1:{port}/livez") != 0, 60)
        server = psutil.Process(proc.pid)
        before, peak, done = server.memory_info().rss, [0], threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], server.memory_info().rss)
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        request = b"GET /livez HTTP/1.1\r\nX-Big: " + b"a" * (64 * 1024 * 1024) + b"\r\n\r\n"
        statuses: list[int] = []
        senders = [threading.Thread(target=lambda: statuses.append(
            raw_exchange(port, request, timeout=60)[0])) for _ in range(8)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(120)
        done.set()
        watcher.join()
    finally:
        proc.terminate()
        proc.wait(30)
    assert statuses == [431] * 8
    assert peak[0] - before < 32 * 1024 * 1024, (before >> 20, peak[0] >> 20)
