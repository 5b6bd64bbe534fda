"""Graceful drain on SIGTERM: answer every request received, and keep answering, then stop.

BentoML's arbiter keeps the listening socket open after a worker's uvicorn stops accepting, so
connections made during shutdown would be reset unanswered. Instead the worker keeps accepting
for the whole `drain_timeout_s`: new /classify requests get 503 + Connection: close, /readyz
turns 503, every response carries Connection: close, and requests already admitted are scored
until the deadline, after which the rest get 503. Only then is SIGTERM handed to uvicorn, which
closes the connections and runs the shutdown hook that flushes the prediction log.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Awaitable
from typing import Any

logger = logging.getLogger(__name__)


class DrainState:
    """Whether this worker is draining, and how many /classify requests it is handling."""

    def __init__(self) -> None:
        self.draining = False
        self.active = 0
        self._deadline_passed: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def deadline_event(self) -> asyncio.Event:
        """The event set when the drain deadline passes (one per event loop)."""
        loop = asyncio.get_running_loop()
        if self._deadline_passed is None or self._deadline_passed[0] is not loop:
            self._deadline_passed = (loop, asyncio.Event())
        return self._deadline_passed[1]

    async def within_deadline(self, work: Awaitable[Any], late: Any) -> Any:
        """The result of `work`, or `late` if the drain deadline passes first."""
        task = asyncio.ensure_future(work)
        deadline = asyncio.ensure_future(self.deadline_event().wait())
        done, _ = await asyncio.wait({task, deadline}, return_when=asyncio.FIRST_COMPLETED)
        deadline.cancel()
        if task in done:
            return task.result()
        task.cancel()
        return late

    async def drain(self, timeout_s: float) -> None:
        """Answer for timeout_s: requests in flight are scored (503 if still waiting at the end),
        new ones get 503 + Connection: close. Only then may the server stop."""
        self.draining = True
        started = time.monotonic()
        logger.info("draining: %d request(s) in flight, answering for %ss", self.active, timeout_s)
        while self.active and time.monotonic() - started < timeout_s:
            await asyncio.sleep(0.05)
        logger.info("in-flight requests answered after %.1fs (%d left)",
                    time.monotonic() - started, self.active)
        # The listening socket stays open until this worker exits, and a load balancer may
        # still send connections for a while after SIGTERM: answer them (503) until the
        # budget is spent, rather than stop accepting and let the kernel reset them.
        while time.monotonic() - started < timeout_s:
            await asyncio.sleep(0.1)
        self.deadline_event().set()
        while self.active and time.monotonic() - started < timeout_s + 2:
            await asyncio.sleep(0.05)  # let the released requests send their 503
        logger.info("drained in %.1fs (%d left)", time.monotonic() - started, self.active)


STATE = DrainState()


def install_sigterm_drain(timeout_s: float, state: DrainState = STATE) -> bool:
    """Put the drain in front of the server's SIGTERM handler (call from the event loop)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    async def drain_then_stop(frame: Any) -> None:
        await state.drain(timeout_s)
        if callable(previous):
            previous(signal.SIGTERM, frame)

    def on_sigterm(signum: int, frame: Any) -> None:
        if state.draining:  # a second SIGTERM: stop now
            if callable(previous):
                previous(signum, frame)
            return
        state.draining = True
        loop.call_soon_threadsafe(lambda: loop.create_task(drain_then_stop(frame)))

    signal.signal(signal.SIGTERM, on_sigterm)
    return True
