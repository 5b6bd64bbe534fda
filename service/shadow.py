"""Shadow evaluation: score each request with a second model off the response path."""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# (request_id, primary labels, shadow labels, shadow model version)
ShadowResult = Callable[[str, list[str], list[str], str], None]
# texts -> (labels, model version)
Scorer = Callable[[list[str]], tuple[list[str], str]]


def local_scorer(model_dir: str, accel: str = "none") -> Scorer:
    """Score texts with a shadow model loaded in this process."""
    from service.inference import classify, load_model

    clf = load_model(model_dir, accel)

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
