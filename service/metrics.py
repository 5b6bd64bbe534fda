"""The Prometheus metrics of the service (names are a contract: alerts and canary analysis)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))
# Labels Prometheus (and prometheus-operator's relabelling) sets on every scraped series; a
# metric label of the same name would be renamed to exported_<name> and every query on it breaks.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "endpoint",
                           "container"})


@dataclass(frozen=True)
class ServiceMetrics:
    requests: Any
    duration: Any
    batch_size: Any
    predictions: Any
    score: Any
    errors: Any
    shadow_predictions: Any
    shadow_dropped: Any
    log_dropped: Any
    log_written: Any
    log_database_up: Any


@cache
def service_metrics() -> ServiceMetrics:
    """Create the metrics once per process, after BentoML has set up multiprocess collection."""
    # Imported here, not at module import: prometheus_client picks its multiprocess mode on import.
    from prometheus_client import Counter, Gauge, Histogram

    return ServiceMetrics(
        requests=Counter("moderation_requests_total", "HTTP requests by route and status code",
                         ["route", "code"]),
        duration=Histogram("moderation_request_duration_seconds", "Request latency",
                           ["route"], buckets=LATENCY_BUCKETS),
        batch_size=Histogram("moderation_batch_size", "Texts per model forward pass",
                             buckets=BATCH_BUCKETS),
        predictions=Counter("moderation_predictions_total", "Predictions by label and model",
                            ["label", "model_version"]),
        score=Histogram("moderation_score", "Positive-class (offensive) score",
                        buckets=SCORE_BUCKETS),
        errors=Counter("moderation_errors_total", "Refused or failed requests by kind", ["kind"]),
        shadow_predictions=Counter("moderation_shadow_predictions_total",
                                   "Shadow predictions by agreement with the primary", ["agree"]),
        shadow_dropped=Counter("moderation_shadow_dropped_total",
                               "Requests not shadowed because the shadow queue was full"),
        log_dropped=Counter("moderation_log_dropped_total",
                            "Prediction-log rows dropped (queue full or database error)"),
        log_written=Counter("moderation_log_written_total", "Prediction-log rows written"),
        # The log's health is a metric, not readiness: a database blip must not take every pod
        # out of the Service. "livemin": 0 when any live worker cannot write.
        log_database_up=Gauge("moderation_log_database_up",
                              "1 while the prediction-log database takes writes, 0 while rows "
                              "wait in the buffer for it", multiprocess_mode="livemin"),
    )
