"""Hostile-input strategies and a raw HTTP helper shared by the standing fuzz tests.

The fuzz tests are bounded (FUZZ_EXAMPLES examples, FUZZ_SECONDS of wall time per test; both
overridable by environment for a longer hunt) and deterministic by default (derandomize), so a
failure reproduces on the next run.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "90"))
FUZZ_SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                         derandomize=os.environ.get("FUZZ_RANDOM") != "1",
                         suppress_health_check=list(HealthCheck))


@dataclass
class Tally:
    """Cases tried and cases answered cleanly (no 5xx, no dropped connection)."""

    started: float = field(default_factory=time.monotonic)
    tried: int = 0
    clean: int = 0
    failures: list[str] = field(default_factory=list)

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > FUZZ_SECONDS

    def record(self, case: str, status: int | None) -> None:
        self.tried += 1
        if status is not None and status < 500:
            self.clean += 1
        else:
            self.failures.append(f"{status}: {case[:300]}")


def request(base: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int | None, bytes]:
    """(status, body), or (None, b"") when the server dropped the connection or hung."""
    u = urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    except (http.client.HTTPException, OSError):
        return None, b""
    finally:
        conn.close()


# -- values ---------------------------------------------------------------------------------------

# Any code point, lone surrogates included (JSON can carry them as \ud800 escapes).
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=80)
# Texts known to break tokenizers, databases or limits, mixed into the random ones.
nasty_texts = st.sampled_from(["hello \ud800 world", "\udfff", "a\x00b", "\u202e\u200b",
                               "\ufeff", "x" * 5000, "\U0001f642" * 300, " ", "", "\n\t",
                               "'; DROP TABLE predictions; --", "<script>alert(1)</script>"])
texts = any_text | nasty_texts
# What can travel in a URL or a header after encoding.
url_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF,
                                 exclude_categories=("Cs",)), max_size=40)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    exclude_characters="\x7f"), max_size=60)
huge_ints = st.integers(min_value=-(2**80), max_value=2**80) | st.sampled_from(
    [2**63, 2**63 - 1, -(2**63) - 1, 10**400])
json_scalars = (st.none() | st.booleans() | huge_ints | st.floats(allow_nan=False)
                | texts)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(any_text, inner, max_size=4), max_leaves=12)


@st.composite
def deep_json(draw) -> bytes:
    depth = draw(st.sampled_from([1_000, 5_000, 10_000, 20_000])
                 | st.integers(min_value=500, max_value=20_000))
    if draw(st.booleans()):
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def dumps(value: object) -> bytes:
    """JSON as a client would send it (surrogates escaped, huge ints as digits)."""
    return json.dumps(value).encode()


json_bodies = (json_values.map(dumps) | deep_json() | st.binary(max_size=300)
               | st.integers(min_value=4000, max_value=6000).map(lambda n: b"[" + b"9" * n + b"]"))
# Mostly JSON: the services answer anything else with a 415 before reading the body.
content_types = st.sampled_from(["application/json"] * 7 + [
    "text/plain", "application/json; charset=x", "application/x-www-form-urlencoded",
    "multipart/form-data", ""])
