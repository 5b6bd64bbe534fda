"""Realistic traffic for /classify: holdout texts, single and small-batch requests, long texts.

Run through `make loadtest` (python -m pipelines loadtest), which serves the Bento on loopback.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

from locust import HttpUser, between, task

HOLDOUT = Path(os.environ.get("LOADTEST_HOLDOUT", "data/holdout.csv"))
MAX_CHARS = int(os.environ.get("LOADTEST_MAX_CHARS", "1000"))


def load_texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        # Truncated to the service's limit: this profile measures capacity, not refusals.
        texts = [row["text"][:MAX_CHARS] for row in csv.DictReader(f) if row["text"].strip()]
    if not texts:
        raise SystemExit(f"{path}: no texts to send")
    return texts


TEXTS = load_texts(HOLDOUT)


def long_text(rng: random.Random) -> str:
    """Several holdout texts joined, up to the service's per-text limit."""
    parts, size = [], 0
    while size < MAX_CHARS * 0.8:
        part = rng.choice(TEXTS)
        parts.append(part)
        size += len(part) + 1
    return " ".join(parts)[:MAX_CHARS]


class ModerationUser(HttpUser):
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.rng = random.Random()

    def classify(self, texts: list[str], name: str) -> None:
        with self.client.post("/classify", json={"texts": texts}, name=name,
                              catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
            elif len(resp.json().get("predictions", [])) != len(texts):
                resp.failure("wrong number of predictions")

    @task(6)
    def single(self) -> None:
        self.classify([self.rng.choice(TEXTS)], "classify: 1 text")

    @task(3)
    def small_batch(self) -> None:
        self.classify(self.rng.sample(TEXTS, self.rng.randint(2, 8)), "classify: 2-8 texts")

    @task(1)
    def long(self) -> None:
        self.classify([long_text(self.rng)], "classify: long text")
