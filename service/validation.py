"""Validate a raw /classify request body against the input limits, before any model work."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class InputError(Exception):
    """A request the service refuses: HTTP status, a metric kind, and a message naming the field."""

    status: int
    kind: str
    message: str
    field: str = "texts"

    def to_json(self) -> dict[str, str]:
        return {"error": self.kind, "field": self.field, "detail": self.message}


def parse_json(decoded: str) -> object:
    """json.loads with every parser failure as a 400: syntax, nesting too deep, huge integers."""
    try:
        return json.loads(decoded)
    except json.JSONDecodeError as e:
        raise InputError(400, "invalid_json", f"request body is not valid JSON: {e.msg} "
                         f"(line {e.lineno}, column {e.colno})", "body") from None
    except RecursionError:
        raise InputError(400, "invalid_json", "request body is nested too deeply",
                         "body") from None
    except ValueError as e:  # an integer literal beyond Python's digit limit
        raise InputError(400, "invalid_json", f"request body is not valid JSON: {e}",
                         "body") from None


def text_problem(text: str) -> str | None:
    """Why a text cannot be scored and logged, or None: a lone surrogate cannot be UTF-8 (the
    tokenizer refuses it) and PostgreSQL cannot store NUL (the log would lose the batch)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"character {e.start} ({text[e.start]!r}) is a lone surrogate, not a character"
    if "\x00" in text:
        return f"character {text.index(chr(0))} is NUL"
    return None


def parse_classify_body(body: bytes, max_chars: int, max_texts: int) -> list[str]:
    """The texts of a /classify body, or an InputError saying exactly what is wrong."""
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(400, "invalid_utf8", f"request body is not valid UTF-8 at byte {e.start}",
                         "body") from None
    payload = parse_json(decoded)
    if not isinstance(payload, dict) or "texts" not in payload:
        raise InputError(422, "missing_field", 'body must be a JSON object with a "texts" list')
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise InputError(422, "wrong_type",
                         f'"texts" must be a list of strings, got {type(texts).__name__}')
    if not texts:
        raise InputError(422, "empty_list", '"texts" must hold at least one text')
    if len(texts) > max_texts:
        raise InputError(413, "too_many",
                         f'"texts" holds {len(texts)} texts; the limit is {max_texts}')
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(422, "wrong_type", f"must be a string, got {type(text).__name__}",
                             f"texts[{i}]")
        if not text.strip():
            raise InputError(422, "empty_text", "must not be empty or only whitespace",
                             f"texts[{i}]")
        if len(text) > max_chars:
            raise InputError(413, "too_long",
                             f"has {len(text)} characters; the limit is {max_chars}",
                             f"texts[{i}]")
        problem = text_problem(text)
        if problem:
            raise InputError(422, "invalid_text", problem, f"texts[{i}]")
    return texts
