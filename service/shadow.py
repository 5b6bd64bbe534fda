"""Shadow evaluation: score each request with a second model off the response path."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# (log id, primary labels, shadow labels, shadow model version)
ShadowResult = Callable[[str, list[str], list[str], str], None]
# texts -> (labels, model version)
Scorer = Callable[[list[str]], tuple[list[str], str]]


def local_scorer(model_dir: str, accel: str = "none", threads: int | None = None) -> Scorer:
    """Score texts with a shadow model loaded in this process."""
    from service.inference import classify, load_model

    clf = load_model(model_dir, accel, threads)

    def score(texts: list[str]) -> tuple[list[str], str]:
        return [p["label"] for p in classify(clf, texts)], clf.version

    return score


def remote_scorer(base_url: str, timeout: float = 5.0) -> Scorer:
    """Score texts by POSTing them to `<base_url>/classify` of a shadow instance of this service."""
    url = base_url.rstrip("/") + "/classify"

    def score(texts: list[str]) -> tuple[list[str], str]:
        body = json.dumps({"texts": texts}).encode()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json",
                                                              "X-Shadow": "1"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (configured URL)
            payload = json.load(resp)
        return [p["label"] for p in payload["predictions"]], payload["model_version"]

    return score


SHADOW_NICENESS = 10  # added to the process's nice value (max 19): the primary wins contention


def lower_priority_of_this_thread() -> None:
    """Lower the calling thread's CPU priority (Linux applies nice per thread), so that a local
    shadow model's forward passes yield the cores to the primary's batcher and event loop."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid,
                       min(os.getpriority(os.PRIO_PROCESS, tid) + SHADOW_NICENESS, 19))
    except (AttributeError, OSError) as e:  # not Linux, or not permitted: run at normal priority
        logger.info("shadow thread keeps normal priority: %s", e)


@dataclass
class ShadowEvaluator:
    """A bounded queue of requests for the shadow model; when full, requests are dropped."""

    score: Scorer
    on_result: ShadowResult
    on_dropped: Callable[[], None]
    max_queue: int = 256
    _queue: queue.Queue = field(init=False)
    _thread: threading.Thread | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._queue = queue.Queue(maxsize=self.max_queue)

    def start(self) -> ShadowEvaluator:
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()
        return self

    def submit(self, request_id: str, texts: list[str], primary_labels: list[str]) -> bool:
        """Queue a copy of an answered request; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait((request_id, texts, primary_labels))
            return True
        except queue.Full:
            self.on_dropped()
            return False

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            logger.warning("shadow queue still full at shutdown; queued copies are dropped")
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        lower_priority_of_this_thread()
        while True:
            item: Any = self._queue.get()
            if item is None:
                return
            request_id, texts, primary = item
            try:
                labels, version = self.score(texts)
            except Exception as e:  # a failing shadow must never affect the primary
                logger.warning("shadow scoring failed for %s: %s", request_id, e)
                continue
            self.on_result(request_id, primary, labels, version)
