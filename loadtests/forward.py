"""The raw forward-pass limit: texts/s of the model alone on the load profile's texts.

No HTTP, no queue, no log: tokenise and forward batches back to back in one process with the
service's fast path and thread count. The best batch size's rate, divided by the profile's mean
texts per request, is the requests/s no server of this model can beat on these cores.

    python -m loadtests.forward --model models/candidate --accel auto --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from loadtests.traffic import load_texts, sample_requests

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def texts_per_second(clf: Any, texts: list[str], batch_size: int, seconds: float) -> float:
    """Forward passes over consecutive batches of `texts` for about `seconds`; texts/s."""
    done, start, i = 0, time.perf_counter(), 0
    while True:
        batch = [texts[(i + k) % len(texts)] for k in range(batch_size)]
        clf.predict_proba(batch)
        done, i = done + batch_size, i + batch_size
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def raw_limit(model_dir: Path, accel: str, threads: int, holdout: Path, max_chars: int = 1000,
              batch_sizes: tuple[int, ...] = BATCH_SIZES, seconds: float = 3.0) -> dict[str, Any]:
    """texts/s per batch size, the best one, and that as requests/s of the load profile."""
    from service.inference import load_model, resolve_accel

    accel = resolve_accel(accel, model_dir=model_dir)
    clf = load_model(model_dir, accel, threads, batch_size=max(batch_sizes))
    requests = sample_requests(load_texts(holdout, max_chars), 2000, max_chars)
    texts = [t for r in requests for t in r]
    texts_per_request = len(texts) / len(requests)
    texts_per_second(clf, texts, 8, 0.5)  # warm-up: first-call allocations and kernel choice
    by_batch = {b: round(texts_per_second(clf, texts, b, seconds), 1) for b in batch_sizes}
    best = max(by_batch, key=by_batch.get)
    return {"accel": accel, "threads": threads, "texts_per_s_by_batch": by_batch,
            "best_batch": best, "texts_per_s": by_batch[best],
            "texts_per_request": round(texts_per_request, 2),
            "requests_per_s": round(by_batch[best] / texts_per_request, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/candidate"))
    parser.add_argument("--holdout", type=Path, default=Path("data/holdout.csv"))
    parser.add_argument("--accel", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(raw_limit(args.model, args.accel, args.threads, args.holdout,
                               seconds=args.seconds), indent=2))


if __name__ == "__main__":
    main()
