"""Realistic traffic for /classify: holdout texts, single and small-batch requests, long texts.

Run through `make loadtest` (python -m pipelines loadtest), which serves the Bento on loopback.
The request mix lives in loadtests/traffic.py (the raw forward benchmark draws the same).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import HttpUser, between, task

from loadtests.traffic import MIX, load_texts, request_texts

HOLDOUT = Path(os.environ.get("LOADTEST_HOLDOUT", "data/holdout.csv"))
MAX_CHARS = int(os.environ.get("LOADTEST_MAX_CHARS", "1000"))
TEXTS = load_texts(HOLDOUT, MAX_CHARS)


class ModerationUser(HttpUser):
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.rng = random.Random()

    def classify(self, kind: str, name: str) -> None:
        texts = request_texts(kind, self.rng, TEXTS, MAX_CHARS)
        with self.client.post("/classify", json={"texts": texts}, name=name,
                              catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
            elif len(resp.json().get("predictions", [])) != len(texts):
                resp.failure("wrong number of predictions")

    @task(MIX["single"])
    def single(self) -> None:
        self.classify("single", "classify: 1 text")

    @task(MIX["small_batch"])
    def small_batch(self) -> None:
        self.classify("small_batch", "classify: 2-8 texts")

    @task(MIX["long"])
    def long(self) -> None:
        self.classify("long", "classify: long text")
