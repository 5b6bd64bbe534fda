"""The greedy batcher: concurrent requests share forward passes and get their own results."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.batcher import GreedyBatcher


def test_requests_arriving_during_a_forward_pass_share_the_next_one():
    calls: list[list[str]] = []

    def predict(texts):
        calls.append(list(texts))
        time.sleep(0.05)  # while this runs, the other requests queue up
        return [t.upper() for t in texts]

    async def scenario():
        batcher = GreedyBatcher(predict, max_batch_size=64)
        first = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.sleep(0.01)
        rest = [asyncio.create_task(batcher.submit([f"b{i}", f"c{i}"])) for i in range(5)]
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(scenario())
    assert first == ["A"] and rest == [[f"B{i}", f"C{i}"] for i in range(5)]
    assert calls == [["a"], [t for i in range(5) for t in (f"b{i}", f"c{i}")]]


def test_batches_never_exceed_max_batch_size_texts():
    sizes: list[int] = []
    lock = threading.Lock()

    def predict(texts):
        with lock:
            sizes.append(len(texts))
        time.sleep(0.01)
        return list(texts)

    async def scenario():
        batcher = GreedyBatcher(predict, max_batch_size=4)
        return await asyncio.gather(*(batcher.submit(["x", "y", "z"]) for _ in range(6)))

    assert asyncio.run(scenario()) == [["x", "y", "z"]] * 6
    assert max(sizes) <= 4 and sum(sizes) == 18


def test_a_failing_forward_pass_fails_only_its_requests():
    def predict(texts):
        if "boom" in texts:
            raise RuntimeError("model exploded")
        return list(texts)

    async def scenario():
        batcher = GreedyBatcher(predict, max_batch_size=1)
        bad = asyncio.create_task(batcher.submit(["boom"]))
        good = asyncio.create_task(batcher.submit(["fine"]))
        with pytest.raises(RuntimeError, match="exploded"):
            await bad
        return await good

    assert asyncio.run(scenario()) == ["fine"]
