"""Greedy micro-batching: whenever the model is free, run it on everything that queued meanwhile.

No request ever waits for a batch to fill: an idle model starts at once; under load the batch
grows to whatever arrived during the previous forward pass (up to max_batch_size texts).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio


class GreedyBatcher:
    def __init__(self, predict: Callable[[list[str]], list[Any]], max_batch_size: int) -> None:
        self.predict = predict
        self.max_batch_size = max_batch_size
        self._pending: deque[tuple[list[str], asyncio.Future]] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, texts: list[str]) -> list[Any]:
        """Queue one request's texts; returns their predictions in order."""
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        self._pending.append((texts, future))
        self._wake.set()
        return await future

    def _next_batch(self) -> list[tuple[list[str], asyncio.Future]]:
        batch, size = [], 0
        while self._pending and (not batch
                                 or size + len(self._pending[0][0]) <= self.max_batch_size):
            texts, future = self._pending.popleft()
            if not future.cancelled():  # the client went away while queued
                batch.append((texts, future))
                size += len(texts)
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

    async def _score(self, batch: list[tuple[list[str], asyncio.Future]]) -> None:
        texts = [t for request, _ in batch for t in request]
        try:
            predictions = await anyio.to_thread.run_sync(self.predict, texts)
        except Exception as e:  # every waiting request learns of the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        start = 0
        for request, future in batch:
            if not future.done():
                future.set_result(predictions[start : start + len(request)])
            start += len(request)
