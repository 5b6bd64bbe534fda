"""The gateway and batcher under hostile input and overload, driven in-process through ASGI.

The model is a stand-in that keeps the real tokenizer's unkind part (a lone surrogate raises a
TypeError, failing the whole batch it is in) and takes real time per forward pass; around it
the real Runtime (greedy batcher, the contract answer), without prediction log or shadow.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace

import pytest
import uvicorn.config
from starlette.datastructures import Headers

from service import runtime as runtime_state
from service.batcher import GreedyBatcher, QueueTimeout
from service.drain import STATE as DRAIN
from service.drain import DrainState
from service.gateway import ModerationGateway
from service.runtime import Runtime

LIMITS = {"max_chars": 200, "max_texts": 8, "max_body_bytes": 4096, "max_concurrency": 3,
          "retry_after_s": 1, "body_timeout_s": 0.3, "max_header_bytes": 2048, "max_headers": 20}


def tokenizer_like_predict(pass_s: float = 0.0):
    def predict(texts: list[str]) -> list[dict]:
        for t in texts:
            t.encode("utf-8")  # like the tokenizer, refuses a lone surrogate, whole batch
        time.sleep(pass_s)
        return [{"label": "x", "scores": {"x": 1.0}, "model_version": "v1"} for _ in texts]
    return predict


def stand_in_runtime(batcher: GreedyBatcher | None = None) -> Runtime:
    """The real Runtime around a stand-in model, without prediction log or shadow."""
    return Runtime(SimpleNamespace(retry_after_s=1, log_text="text"),
                   SimpleNamespace(labels=["x"]), log=None, shadow=None, batcher=batcher)


@pytest.fixture
def runtime():
    real = stand_in_runtime()
    runtime_state.set_current(real)
    yield real
    runtime_state.set_current(None)


async def asgi_call(app, body_parts: list[bytes], headers: list[tuple[bytes, bytes]] | None = None,
                    gap_s: float = 0.0, path: str = "/classify") -> tuple[int, dict, dict]:
    """One POST through the ASGI app; body sent in parts, `gap_s` apart."""
    parts = list(body_parts)
    sent: list[dict] = []

    async def receive() -> dict:
        if not parts:
            await asyncio.sleep(3600)
        if gap_s:
            await asyncio.sleep(gap_s)
        chunk = parts.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path,
             "headers": headers or [(b"content-type", b"application/json")]}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), json.loads(body)


def gateway(**overrides) -> ModerationGateway:
    async def bentoml_app(scope, receive, send):
        raise AssertionError("the gateway answers POST /classify itself")
    return ModerationGateway(bentoml_app, **{**LIMITS, **overrides})


def body(texts) -> list[bytes]:
    return [json.dumps({"texts": texts}).encode()]


def test_a_lone_surrogate_fails_only_its_own_request_in_a_shared_batch(runtime):
    runtime.batcher = GreedyBatcher(tokenizer_like_predict(0.01), max_batch_size=64)
    app = gateway(max_concurrency=64)

    async def scenario():
        # bypass the validator for half of the bad ones, as if a text slipped past it
        bad = [asgi_call(app, [b'{"texts": ["hello \\ud800 world"]}']) for _ in range(4)]
        slipped = [runtime.batcher.submit(["x\ud800"]) for _ in range(4)]
        good = [asgi_call(app, body([f"fine {i}", "also fine"])) for i in range(24)]
        return await asyncio.gather(*bad, *good, *slipped, return_exceptions=True)

    results = asyncio.run(scenario())
    bad, good, slipped = results[:4], results[4:28], results[28:]
    assert [(s, b["error"], b["field"]) for s, _, b in bad] == [(422, "invalid_text",
                                                                 "texts[0]")] * 4
    assert [s for s, _, _ in good] == [200] * 24
    assert all(isinstance(e, UnicodeEncodeError) for e in slipped)


@pytest.mark.parametrize(("text", "where"), [("ok \ud800", "lone surrogate"),
                                             ("a\x00b", "character 1 is NUL")])
def test_texts_that_cannot_be_scored_or_logged_are_a_422_naming_the_text(runtime, text, where):
    status, _, payload = asyncio.run(asgi_call(gateway(), body(["fine", text])))
    assert (status, payload["error"], payload["field"]) == (422, "invalid_text", "texts[1]")
    assert where in payload["detail"]


@pytest.mark.parametrize("raw", [
    b'{"texts": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    b'{"a": ' * 10_000 + b"1" + b"}" * 10_000,
    b'{"texts": [' + b"9" * 5_000 + b"]}",
], ids=["deep-list", "deep-object", "huge-integer"])
def test_parser_bombs_get_a_json_400_at_once(runtime, raw):
    started = time.perf_counter()
    status, _, payload = asyncio.run(asgi_call(gateway(max_body_bytes=100_000), [raw]))
    assert status == 400 and payload["error"] == "invalid_json" and payload["field"] == "body"
    assert time.perf_counter() - started < 1.0


def test_slow_body_senders_time_out_without_holding_concurrency_slots(runtime):
    runtime.batcher = GreedyBatcher(tokenizer_like_predict(), max_batch_size=64)
    app = gateway()

    async def scenario():
        slow = [asyncio.create_task(asgi_call(app, [b'{"texts": ', b'["a"]}'], gap_s=5))
                for _ in range(3 * LIMITS["max_concurrency"])]
        await asyncio.sleep(0.05)
        valid = await asgi_call(app, body(["arrives while the slow ones dribble"]))
        return valid, await asyncio.gather(*slow)

    valid, slow = asyncio.run(scenario())
    assert valid[0] == 200
    assert {(s, b["error"]) for s, _, b in slow} == {(408, "body_timeout")}


def test_in_flight_beyond_max_concurrency_is_refused_at_once_with_retry_after(runtime):
    runtime.batcher = GreedyBatcher(tokenizer_like_predict(0.3), max_batch_size=1)
    app = gateway(max_concurrency=2)

    async def scenario():
        held = [asyncio.create_task(asgi_call(app, body([f"held {i}"]))) for i in range(2)]
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        refused = await asgi_call(app, body(["one too many"]))
        return refused, time.perf_counter() - started, await asyncio.gather(*held)

    (status, headers, payload), elapsed, held = asyncio.run(scenario())
    assert status == 429 and payload["error"] == "overloaded" and headers[b"retry-after"] == b"1"
    assert elapsed < 0.2 and [s for s, _, _ in held] == [200, 200]


@pytest.mark.parametrize("headers", [
    [(b"x-big", b"a" * 4096)],
    [(f"x-h{i}".encode(), b"1") for i in range(50)],
], ids=["too-large", "too-many"])
def test_oversized_or_too_many_headers_get_431(runtime, headers):
    status, _, payload = asyncio.run(asgi_call(gateway(), body(["hi"]), headers=headers))
    assert status == 431 and payload["error"] == "headers_too_large"


def test_queue_time_shedding_keeps_admitted_waits_within_the_budget():
    pass_s, budget_s = 0.05, 0.25
    waits: list[float] = []
    shed = 0

    async def one(batcher):
        nonlocal shed
        started = time.perf_counter()
        try:
            await batcher.submit(["t"] * 4)
            waits.append(time.perf_counter() - started)
        except QueueTimeout:
            shed += 1

    async def scenario():
        # capacity: 4 texts per 50 ms pass = 20 requests/s; offered: 40 requests/s for 2 s
        batcher = GreedyBatcher(tokenizer_like_predict(pass_s), 4, max_queue_s=budget_s)
        tasks = []
        for _ in range(80):
            tasks.append(asyncio.create_task(one(batcher)))
            await asyncio.sleep(0.025)
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    waits.sort()
    assert shed >= 20, "at twice the capacity a good share must be shed"
    assert waits[int(len(waits) * 0.95)] <= budget_s + 2 * pass_s + 0.1


def test_drain_deadline_answers_requests_still_waiting():
    async def scenario():
        state = DrainState()
        state.active = 1
        slow = asyncio.create_task(state.within_deadline(asyncio.sleep(30, "done"), "late"))
        fast = asyncio.create_task(state.within_deadline(asyncio.sleep(0.01, "done"), "late"))
        started = time.perf_counter()
        drainer = asyncio.create_task(state.drain(0.2))
        results = await asyncio.gather(slow, fast)
        state.active = 0
        await drainer
        return results, time.perf_counter() - started

    (slow, fast), elapsed = asyncio.run(scenario())
    assert (slow, fast) == ("late", "done") and elapsed < 2.0


def test_the_drain_keeps_answering_for_its_whole_budget_even_with_nothing_in_flight(runtime):
    app = gateway()

    async def scenario():
        drainer = asyncio.create_task(DRAIN.drain(0.6))
        await asyncio.sleep(0.3)  # nothing was in flight: the old drain had already ended
        late = await asgi_call(app, body(["arrives after SIGTERM"]))
        return late, drainer.done(), await drainer

    try:
        (status, headers, payload), ended_early, _ = asyncio.run(scenario())
    finally:
        DRAIN.draining = False
    assert not ended_early
    assert (status, payload["error"], headers[b"connection"]) == (503, "shutting_down", b"close")


@pytest.mark.parametrize("text", ["\u200b", "\u200b\u200c\u200d\ufeff", " \u2060 \u00ad ",
                                  "\u202e\u202c"], ids=["zwsp", "zero-widths", "wj-shy",
                                                         "bidi-only"])
def test_texts_of_only_invisible_characters_are_a_422_naming_the_text(runtime, text):
    status, _, payload = asyncio.run(asgi_call(gateway(), body(["fine", text])))
    assert (status, payload["error"], payload["field"]) == (422, "empty_text", "texts[1]")


@pytest.mark.parametrize(("text", "name"), [("\x1b[31mred", "ESC (U+001B)"),
                                            ("bell\x07", "a control character (U+0007)"),
                                            ("c1 \x9b", "a control character (U+009B)"),
                                            ("del\x7f", "DEL (U+007F)")])
def test_control_characters_are_a_422_naming_the_text_and_character(runtime, text, name):
    status, _, payload = asyncio.run(asgi_call(gateway(), body([text])))
    assert (status, payload["error"], payload["field"]) == (422, "invalid_text", "texts[0]")
    assert name in payload["detail"]


def test_tabs_newlines_and_visible_text_around_zero_width_characters_are_accepted(runtime):
    runtime.batcher = GreedyBatcher(tokenizer_like_predict(), max_batch_size=64)
    status, _, payload = asyncio.run(asgi_call(gateway(), body(["a\tb\r\nc", "x\u200by"])))
    assert status == 200 and len(payload["predictions"]) == 2


@pytest.mark.parametrize("content_type", [None, b"text/plain", b"application/x-www-form-urlencoded",
                                          b"multipart/form-data; boundary=x", b"application/jsonx"],
                         ids=["none", "text-plain", "form", "multipart", "lookalike"])
def test_a_body_that_is_not_declared_json_is_a_415(runtime, content_type):
    headers = [(b"content-type", content_type)] if content_type else [(b"host", b"x")]
    status, _, payload = asyncio.run(asgi_call(gateway(), body(["hi"]), headers=headers))
    assert (status, payload["error"], payload["field"]) == (415, "unsupported_media_type",
                                                            "content-type")


def test_json_with_a_charset_parameter_is_accepted(runtime):
    runtime.batcher = GreedyBatcher(tokenizer_like_predict(), max_batch_size=64)
    headers = [(b"content-type", b"Application/JSON; charset=utf-8")]
    assert asyncio.run(asgi_call(gateway(), body(["hi"]), headers=headers))[0] == 200


def test_the_route_answers_the_contract_with_the_callers_request_id(runtime):
    runtime.batcher = GreedyBatcher(tokenizer_like_predict(), max_batch_size=64)
    logged = []
    runtime.after_response = lambda *args: logged.append(args)
    headers = [(b"content-type", b"application/json"), (b"x-request-id", b"caller-7")]
    status, out, payload = asyncio.run(asgi_call(gateway(), body(["a", "b"]), headers=headers))
    assert (status, out[b"x-model-version"], out[b"x-request-id"]) == (200, b"v1", b"caller-7")
    assert payload["model_version"] == "v1" and len(payload["predictions"]) == 2
    assert [(rid, texts) for rid, texts, *_ in logged] == [("caller-7", ["a", "b"])]


def test_a_model_failure_is_the_routes_json_500_and_other_requests_still_score(runtime):
    def breaks_on_boom(texts):
        if "boom" in texts:
            raise RuntimeError("model broke")
        return tokenizer_like_predict()(texts)

    runtime.batcher = GreedyBatcher(breaks_on_boom, max_batch_size=64)
    app = gateway(max_concurrency=8)

    async def scenario():
        return await asyncio.gather(asgi_call(app, body(["boom"])),
                                    *[asgi_call(app, body([f"fine {i}"])) for i in range(4)])

    (status, _, payload), *good = asyncio.run(scenario())
    assert (status, payload["error"], payload["field"]) == (500, "internal", "service")
    assert [s for s, _, _ in good] == [200] * 4


def test_queue_time_shedding_is_a_429_with_retry_after(runtime):
    runtime.batcher = GreedyBatcher(tokenizer_like_predict(0.3), max_batch_size=1,
                                    max_queue_s=0.1)
    app = gateway(max_concurrency=8)

    async def scenario():
        first = asyncio.create_task(asgi_call(app, body(["first"])))
        await asyncio.sleep(0.35)  # one pass timed: the batcher now knows a pass takes 0.3 s
        second = asyncio.create_task(asgi_call(app, body(["second"])))
        await asyncio.sleep(0.05)
        return await first, await asgi_call(app, body(["third"])), await second

    _, (status, headers, payload), _ = asyncio.run(scenario())
    assert (status, payload["error"], payload["field"]) == (429, "overloaded", "service")
    assert headers[b"retry-after"] == b"1"


def test_the_bentoml_api_method_answers_exactly_what_the_gateway_answers(runtime, monkeypatch):
    # importing the service registers the guarded protocol in uvicorn: undone after the test
    monkeypatch.setitem(uvicorn.config.HTTP_PROTOCOLS, "auto",
                        uvicorn.config.HTTP_PROTOCOLS["auto"])
    from service.service import Moderation

    runtime.batcher = GreedyBatcher(tokenizer_like_predict(), max_batch_size=64)
    ctx = SimpleNamespace(request=SimpleNamespace(headers=Headers({"x-request-id": "r1"})),
                          response=SimpleNamespace(status_code=200, headers={}))
    method = Moderation.apis["classify"].func
    method_body = asyncio.run(method(SimpleNamespace(runtime=runtime), ["a", "b"], ctx))
    status, headers, gateway_body = asyncio.run(asgi_call(gateway(), body(["a", "b"])))
    assert (ctx.response.status_code, method_body) == (status, gateway_body) == (200, method_body)
    assert ctx.response.headers["x-model-version"] == headers[b"x-model-version"].decode()
