"""What the running service holds once loaded: model, prediction log, shadow evaluator."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.runtime.params import ServeParams
from service.batcher import GreedyBatcher, QueueTimeout
from service.inference import classify
from service.kept_text import TextPolicy
from service.metrics import service_metrics
from service.predlog import PredictionLog, new_log_id, prediction_rows
from service.shadow import ShadowEvaluator, local_scorer, remote_scorer
from service.validation import InputError

logger = logging.getLogger(__name__)


@dataclass
class Answer:
    """What /classify answers: status, extra headers and the JSON body of the contract."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def refusal(cls, error: InputError, retry_after_s: int | None = None) -> Answer:
        service_metrics().errors.labels(kind=error.kind).inc()
        headers = {} if retry_after_s is None else {"retry-after": str(retry_after_s)}
        return cls(error.status, error.to_json(), headers)


@dataclass
class Runtime:
    settings: ServeParams
    classifier: Any
    log: PredictionLog | None  # None: db_url "" (the shadow pod keeps no log nobody reads)
    shadow: ShadowEvaluator | None
    batcher: GreedyBatcher | None = None  # set by start_runtime
    text_policy: TextPolicy | None = None

    @property
    def model_version(self) -> str:
        return self.classifier.version

    def predict_batch(self, texts: list[str]) -> list[dict]:
        """One forward pass over a batch of texts, with the per-prediction metrics."""
        metrics = service_metrics()
        metrics.batch_size.observe(len(texts))
        predictions = classify(self.classifier, texts)
        positive = self.classifier.labels[-1]
        for p in predictions:
            metrics.predictions.labels(label=p["label"], model_version=p["model_version"]).inc()
            metrics.score.observe(p["scores"][positive])
        return predictions

    async def classify(self, texts: list[str], request_id: str, started: float) -> Answer:
        """The /classify answer for validated texts: scored in the greedy batcher's next forward
        pass, logged, and shaped as the contract (model version, one prediction per text)."""
        try:
            predictions = await self.batcher.submit(texts)  # type: ignore[union-attr]
        except QueueTimeout:
            return Answer.refusal(InputError(429, "overloaded", "the model is too far behind to "
                                             "answer in time; retry later", "service"),
                                  self.settings.retry_after_s)
        except Exception:
            # Texts known to be unscorable got a 422 before batching, so this is the model's
            # fault: a 5xx (the canary analysis counts it), kept to this request by the
            # batcher's retry-alone.
            logger.exception("classify %s: inference failed", request_id)
            return Answer.refusal(InputError(500, "internal", "inference failed; see the server "
                                             "log", "service"))
        version = predictions[0]["model_version"]
        # Enqueued (non-blocking) before the answer leaves, so an acknowledged prediction is
        # always queued and a graceful shutdown flushes it.
        self.after_response(request_id, texts, predictions,
                            (time.perf_counter() - started) * 1000)
        return Answer(200, {"model_version": version, "predictions": predictions},
                      {"x-model-version": version})

    def after_response(self, request_id: str, texts: list[str], predictions: list[dict],
                       latency_ms: float) -> None:
        """Log the request's predictions and hand a copy to the shadow (both non-blocking).

        The rows are keyed by a fresh server id; the caller's `request_id` is stored beside it,
        so a repeated X-Request-Id neither merges requests nor lets a shadow result land on
        another request's rows."""
        log_id = new_log_id()
        policy = self.text_policy or TextPolicy(self.settings.log_text)
        if self.log is not None:
            self.log.record(prediction_rows(log_id, texts, predictions, latency_ms, policy,
                                            client_request_id=request_id,
                                            positive=self.classifier.labels[-1]))
        if self.shadow is not None:
            self.shadow.submit(log_id, texts, [p["label"] for p in predictions])

    def record_shadow(self, log_id: str, primary: list[str], shadow: list[str],
                      version: str) -> None:
        metrics = service_metrics()
        for a, b in zip(primary, shadow, strict=False):
            metrics.shadow_predictions.labels(agree=str(a == b).lower()).inc()
        if self.log is not None:
            self.log.record_shadow(log_id, shadow, version)

    def close(self) -> None:
        """Graceful shutdown: finish shadow work, then flush every queued log row."""
        if self.shadow is not None:
            self.shadow.close()
        if self.log is not None:
            self.log.close()
            logger.info("prediction log flushed and closed")


def build_shadow(settings: ServeParams, runtime: Runtime) -> ShadowEvaluator | None:
    if settings.shadow_model_dir:
        score = local_scorer(settings.shadow_model_dir, settings.accel, settings.torch_threads)
    elif settings.shadow_url:
        score = remote_scorer(settings.shadow_url)
    else:
        return None
    metrics = service_metrics()
    return ShadowEvaluator(score=score, on_result=runtime.record_shadow,
                           on_dropped=metrics.shadow_dropped.inc,
                           max_queue=settings.shadow_queue).start()


def start_runtime(settings: ServeParams, classifier: Any) -> Runtime:
    """Open the prediction log and the shadow evaluator around a loaded classifier."""
    log = open_log(settings.db_url, settings) if settings.db_url else None
    policy = TextPolicy(settings.log_text, settings.log_text_share, settings.log_text_uncertain)
    runtime = Runtime(settings, classifier, log, None, text_policy=policy)
    runtime.shadow = build_shadow(settings, runtime)
    runtime.batcher = GreedyBatcher(runtime.predict_batch, settings.max_batch_size,
                                    max_queue_s=settings.max_queue_ms / 1000)
    return runtime


def open_log(db_url: str, settings: ServeParams) -> PredictionLog:
    """Start the background writer of the prediction log at db_url."""
    metrics = service_metrics()
    if db_url.startswith("sqlite:///") and not Path(db_url[10:]).is_absolute():
        # A relative SQLite path is relative to where the service was started.
        db_url = "sqlite:///" + str(Path(os.getcwd()) / db_url[10:])
    log = PredictionLog(db_url, settings.log_queue, on_written=metrics.log_written.inc,
                        on_dropped=metrics.log_dropped.inc,
                        on_health=lambda up: metrics.log_database_up.set(int(up)),
                        retention_days=settings.log_text_retention_days).start()
    return log


_current: Runtime | None = None


def set_current(runtime: Runtime | None) -> None:
    global _current
    _current = runtime


def current() -> Runtime | None:
    """The runtime of this worker process, once the service instance has loaded."""
    return _current
