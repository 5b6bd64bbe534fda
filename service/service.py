"""BentoML service `moderation`: the entry point that wires the parts together. It loads the model
once (service.inference.load_model), starts the runtime (service/runtime.py: the model, its greedy
batcher, the prediction log and the shadow evaluator); `/classify` is one
`@bentoml.api` method's call, `Runtime.classify`. The gateway middleware in front
(service/gateway.py) makes that call for POST /classify itself (measured faster than BentoML's
route) and does what BentoML cannot: limits checked before a body is parsed, a concurrency limit
after it, the JSON error contract for every refusal, request ids, the SIGTERM drain, metrics.

Serve with `make serve` (the built Bento) or `bentoml serve service.service:Moderation`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import bentoml

from service import runtime as runtime_state
from service.drain import install_sigterm_drain
from service.gateway import ModerationGateway, request_id_from
from service.http_guard import HeadLimits
from service.http_guard import install as install_http_guard
from service.inference import load_model
from service.settings import default_model_dir, load_settings

logger = logging.getLogger(__name__)
# BentoML's logging setup shows only its own loggers' INFO lines; the service's start-up lines
# (model, accel chosen) belong next to them.
logging.getLogger("service").setLevel(logging.INFO)
BENTO_MODEL_NAME = "moderation-model"
SETTINGS = load_settings()
# Imported by the worker before it builds its uvicorn server: the protocol class it picks.
install_http_guard(HeadLimits(SETTINGS.header_timeout_s, SETTINGS.max_header_bytes,
                              SETTINGS.max_pending_connections))


def resolve_model_dir(configured: str | None) -> Path:
    """MODERATION_MODEL_DIR, else the model bundled in the Bento, else models/candidate."""
    if configured:
        return Path(configured)
    try:
        return Path(bentoml.models.get(f"{BENTO_MODEL_NAME}:latest").path)
    except bentoml.exceptions.NotFound:
        return default_model_dir()


# traffic: only BentoML's timeout, a backstop (504). Its max_concurrency is not used: that
# middleware sits outside ours, so it would count slow senders before their body is read and
# answer 429 without Retry-After or the JSON error contract; the gateway limits admitted
# requests instead.
@bentoml.service(name="moderation", workers=1, traffic={"timeout": 30},
                 http={"port": 3000})
class Moderation:
    """Classifies texts as offensive or not, batching texts across requests."""

    def __init__(self) -> None:
        model_dir = resolve_model_dir(SETTINGS.model_dir)
        logger.info("loading model from %s (accel=%s)", model_dir, SETTINGS.accel)
        self.classifier = load_model(model_dir, SETTINGS.accel, SETTINGS.torch_threads)
        self.runtime = runtime_state.start_runtime(SETTINGS, self.classifier)
        runtime_state.set_current(self.runtime)
        install_sigterm_drain(SETTINGS.drain_timeout_s)

    # Not batchable=True: BentoML's batcher hands each request a slice of one list (no room for
    # the contract's model_version and headers), fails every request of a batch that fails, and
    # waits for batches to fill (docs/service.md, "One request path"). The gateway answers
    # POST /classify itself with this same call, so this method is what BentoML's OpenAPI and
    # clients see of it, and what an in-process caller gets.
    @bentoml.api(route="/classify")
    async def classify(self, texts: list[str], ctx: bentoml.Context) -> dict[str, Any]:
        """Score the texts in the greedy batcher's next forward pass; answer
        `{"model_version", "predictions"}` or a JSON error (`{"error", "field", "detail"}`)."""
        request_id = request_id_from(ctx.request.headers.raw)
        answer = await self.runtime.classify(texts, request_id, time.perf_counter())
        ctx.response.status_code = answer.status
        ctx.response.headers.update(answer.headers)
        return answer.body

    # No __is_ready__: ready once the model is loaded. The prediction log buffers while its
    # database is away and reports that as moderation_log_database_up, so a database blip
    # cannot take every pod out of the Service at once.

    @bentoml.on_shutdown
    def flush_prediction_log(self) -> None:
        runtime_state.set_current(None)
        self.runtime.close()


Moderation.add_asgi_middleware(
    ModerationGateway, max_chars=SETTINGS.max_chars, max_texts=SETTINGS.max_texts,
    max_body_bytes=SETTINGS.max_body_bytes, max_concurrency=SETTINGS.max_concurrency,
    retry_after_s=SETTINGS.retry_after_s, body_timeout_s=SETTINGS.body_timeout_s,
    max_header_bytes=SETTINGS.max_header_bytes, max_headers=SETTINGS.max_headers)
