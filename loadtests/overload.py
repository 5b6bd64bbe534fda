"""Overload benchmark (run by hand, never in tests): admitted latency at twice the capacity.

Measures the service's capacity with closed-loop clients, then offers twice that rate open-loop
(requests arrive on a clock, whether or not earlier ones were answered) and prints the admitted
requests' p50/p95 against `serve.max_queue_ms`, and the share shed with 429. Runs once with the
configured budget and once with shedding on queue time effectively off, for contrast.

    python -m loadtests.overload --model models/candidate [--seconds 15] [--budget-ms 1000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

from loadtests.serving import bentoml_serve_command, free_port, running_server

TEXTS = [f"benchmark text {i}: you are not as clever as you think you are" for i in range(8)]


def post(base: str) -> tuple[int, float]:
    u = urlparse(base)
    started = time.perf_counter()
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.request("POST", "/classify", json.dumps({"texts": TEXTS}),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except (http.client.HTTPException, OSError):
        return 0, time.perf_counter() - started
    finally:
        conn.close()


def capacity(base: str, clients: int, seconds: float) -> float:
    """Requests/s the service sustains with `clients` closed-loop clients."""
    done, stop = [0], time.monotonic() + seconds
    lock = threading.Lock()

    def client() -> None:
        while time.monotonic() < stop:
            if post(base)[0] == 200:
                with lock:
                    done[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / seconds


def open_loop(base: str, rate: float, seconds: float) -> dict[str, float]:
    """Offer `rate` requests/s for `seconds`; admitted latency percentiles and the shed share."""
    results: list[tuple[int, float]] = []
    with ThreadPoolExecutor(max_workers=256) as pool:
        futures, start = [], time.monotonic()
        for i in range(int(rate * seconds)):
            time.sleep(max(start + i / rate - time.monotonic(), 0))
            futures.append(pool.submit(post, base))
        results = [f.result() for f in futures]
    admitted = sorted(latency for status, latency in results if status == 200)

    def pct(q: float) -> float:
        return admitted[min(int(q * len(admitted)), len(admitted) - 1)] * 1000 if admitted else 0

    return {"offered": len(results), "admitted": len(admitted),
            "shed_429": sum(1 for s, _ in results if s == 429),
            "other": sum(1 for s, _ in results if s not in (200, 429)),
            "p50_ms": round(pct(0.5)), "p95_ms": round(pct(0.95))}


def run(model: str, budget_ms: int, seconds: float, work: Path) -> None:
    for name, queue_ms in (("shedding", budget_ms), ("no-shedding", 600_000)):
        port = free_port()
        env = {"MODERATION_MODEL_DIR": model, "MODERATION_MAX_QUEUE_MS": str(queue_ms),
               "MODERATION_MAX_CONCURRENCY": "256",
               "MODERATION_DB_URL": f"sqlite:///{work}/{name}.db"}
        with running_server(bentoml_serve_command("service.service:Moderation", port), port,
                            work / f"{name}.log", env=env) as (base, _, _):
            capacity(base, 4, 3)  # warm-up, not recorded
            rate = capacity(base, 16, seconds)
            stats = open_loop(base, 2 * rate, seconds)
        print(f"{name:<12} max_queue_ms={queue_ms}: capacity {rate:.1f} req/s; at 2x: "
              f"{stats['admitted']}/{stats['offered']} admitted, {stats['shed_429']} shed (429), "
              f"{stats['other']} other; admitted p50 {stats['p50_ms']} ms, "
              f"p95 {stats['p95_ms']} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/candidate")
    parser.add_argument("--budget-ms", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(args.model, args.budget_ms, args.seconds, Path(tmp))


if __name__ == "__main__":
    main()
