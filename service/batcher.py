"""Greedy micro-batching: whenever the model is free, run it on everything that queued meanwhile.

No request ever waits for a batch to fill: an idle model starts at once; under load the batch
grows to whatever arrived during the previous forward pass (up to max_batch_size texts).
Overload is shed on queue time: a request that would wait (or has waited) longer than
max_queue_s for the model is refused with QueueTimeout instead of being answered late.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio


class QueueTimeout(Exception):
    """The model is too far behind to answer this request within the queue-time budget."""


@dataclass
class _Queued:
    texts: list[str]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.monotonic)


class GreedyBatcher:
    def __init__(self, predict: Callable[[list[str]], list[Any]], max_batch_size: int,
                 max_queue_s: float = math.inf) -> None:
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.max_queue_s = max_queue_s
        self._pending: deque[_Queued] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._batch_s = 0.0  # moving average of one forward pass, for the wait estimate
        self._batch_started: float | None = None

    async def submit(self, texts: list[str]) -> list[Any]:
        """Queue one request's texts; returns their predictions in order."""
        if self.expected_wait_s(len(texts)) > self.max_queue_s:
            raise QueueTimeout(f"expected wait {self.expected_wait_s(len(texts)):.2f}s")
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Queued(texts, future))
        self._wake.set()
        return await future

    def expected_wait_s(self, n_texts: int) -> float:
        """How long new texts would queue: the rest of the running pass plus the passes ahead."""
        queued = sum(len(q.texts) for q in self._pending) + n_texts
        passes_ahead = math.ceil(queued / self.max_batch_size) - 1
        running_left = 0.0
        if self._batch_started is not None:
            running_left = max(self._batch_s - (time.monotonic() - self._batch_started), 0.0)
        return running_left + passes_ahead * self._batch_s

    def _shed_if_late(self, queued: _Queued) -> bool:
        if time.monotonic() - queued.queued_at <= self.max_queue_s:
            return False
        queued.future.set_exception(QueueTimeout("waited longer than the queue-time budget"))
        return True

    def _next_batch(self) -> list[_Queued]:
        batch, size = [], 0
        while self._pending and (not batch
                                 or size + len(self._pending[0].texts) <= self.max_batch_size):
            queued = self._pending.popleft()
            # skip a client that went away while queued, or one that has waited too long
            if not queued.future.cancelled() and not self._shed_if_late(queued):
                batch.append(queued)
                size += len(queued.texts)
        return batch

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._next_batch()
                if batch:
                    await self._score(batch)

    async def _timed_predict(self, texts: list[str]) -> list[Any]:
        self._batch_started = time.monotonic()
        try:
            return await anyio.to_thread.run_sync(self.predict, texts)
        finally:
            elapsed = time.monotonic() - self._batch_started
            self._batch_s = elapsed if not self._batch_s else 0.8 * self._batch_s + 0.2 * elapsed
            self._batch_started = None

    async def _score(self, batch: list[_Queued]) -> None:
        texts = [t for queued in batch for t in queued.texts]
        try:
            predictions = await self._timed_predict(texts)
        except Exception as e:
            if len(batch) == 1:
                _settle(batch[0].future, error=e)
            else:  # retry each request alone, so only the one that breaks the model fails
                for queued in batch:
                    await self._score([queued])
            return
        start = 0
        for queued in batch:
            _settle(queued.future, predictions[start : start + len(queued.texts)])
            start += len(queued.texts)


def _settle(future: asyncio.Future, result: Any = None, error: Exception | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
