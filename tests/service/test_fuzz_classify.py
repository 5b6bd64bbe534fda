"""Standing fuzz test of /classify on the real service: no 5xx, no dropped connection, and the
service still answers afterwards. Bounded: tests/hostile.py FUZZ_EXAMPLES and FUZZ_SECONDS."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tests.hostile import (
    FUZZ_SETTINGS,
    Tally,
    content_types,
    dumps,
    header_text,
    json_bodies,
    request,
    texts,
)

texts_bodies = st.lists(texts | st.text(max_size=300), max_size=12).map(
    lambda texts: dumps({"texts": texts}))
classify_bodies = texts_bodies | json_bodies
paths = st.sampled_from(["/classify", "/classify/", "/classify?x=1", "//classify", "/livez",
                         "/readyz", "/metrics", "/docs.json", "/nope"])
methods = st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "OPTIONS"])
# Most cases are well-formed POSTs to /classify, where the model and the batcher are reached.
targeted = st.tuples(st.just("POST"), st.just("/classify"), texts_bodies)
anything = st.tuples(methods, paths, classify_bodies)
cases = st.one_of(targeted, targeted, st.tuples(st.just("POST"), st.just("/classify"),
                                                json_bodies), anything)
extra_headers = st.dictionaries(
    st.sampled_from(["X-Request-Id", "Accept", "Content-Encoding", "Expect", "X-Forwarded-For",
                     "Accept-Encoding", "Transfer-Encoding-Hint"]), header_text, max_size=3)


def fuzz_classify(base: str) -> Tally:
    """Send FUZZ_EXAMPLES hostile requests to a running service; the tally of how they ended."""
    tally = Tally()

    @FUZZ_SETTINGS
    @given(case=cases, content_type=content_types, headers=extra_headers)
    def one_request(case, content_type, headers):
        method, path, body = case
        if tally.out_of_time():
            return
        all_headers = {**headers, **({"Content-Type": content_type} if content_type else {})}
        status, payload = request(base, method, path, body, all_headers)
        tally.record(f"{method} {path} {all_headers} {body[:200]!r}", status)
        if path.startswith("/classify") and method == "POST" and status not in (200, None):
            assert "error" in json.loads(payload), payload[:200]

    one_request()
    return tally


def test_fuzzed_classify_requests_never_get_a_5xx(server):
    base = server["base"]
    tally = fuzz_classify(base)
    print(f"\nclassify fuzz: {tally.tried} cases tried, {tally.clean} clean")
    assert not tally.failures, tally.failures[:5]
    assert request(base, "GET", "/livez")[0] == 200
    status, payload = request(base, "POST", "/classify", dumps({"texts": ["still alive?"]}),
                              {"Content-Type": "application/json"})
    assert status == 200 and json.loads(payload)["predictions"]
