"""The load profile's requests, shared by the Locust user and the raw forward-pass benchmark.

Holdout texts (truncated to the service's limit): 60 % single texts, 30 % batches of 2-8,
10 % long texts (holdout texts joined up to the limit).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

# task -> weight; the Locust user's @task weights are these numbers.
MIX = {"single": 6, "small_batch": 3, "long": 1}


def load_texts(path: Path, max_chars: int) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        # Truncated to the service's limit: this profile measures capacity, not refusals.
        texts = [row["text"][:max_chars] for row in csv.DictReader(f) if row["text"].strip()]
    if not texts:
        raise SystemExit(f"{path}: no texts to send")
    return texts


def long_text(rng: random.Random, texts: list[str], max_chars: int) -> str:
    """Several holdout texts joined, up to the service's per-text limit."""
    parts, size = [], 0
    while size < max_chars * 0.8:
        part = rng.choice(texts)
        parts.append(part)
        size += len(part) + 1
    return " ".join(parts)[:max_chars]


def request_texts(task: str, rng: random.Random, texts: list[str], max_chars: int) -> list[str]:
    """The texts of one request of the given task."""
    if task == "single":
        return [rng.choice(texts)]
    if task == "small_batch":
        return rng.sample(texts, rng.randint(2, 8))
    return [long_text(rng, texts, max_chars)]


def sample_requests(texts: list[str], n: int, max_chars: int, seed: int = 0) -> list[list[str]]:
    """n requests drawn with the profile's weights."""
    rng = random.Random(seed)
    tasks = rng.choices(list(MIX), weights=list(MIX.values()), k=n)
    return [request_texts(task, rng, texts, max_chars) for task in tasks]
