"""Validate a raw /classify request body against the input limits, before any model work."""

from __future__ import annotations

import json
import unicodedata
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


ALLOWED_CONTROLS = frozenset("\t\n\r")
_CONTROL_NAMES = {0x00: "NUL", 0x1B: "ESC", 0x7F: "DEL"}


def text_problem(text: str) -> str | None:
    """Why a text cannot be scored and logged, or None: a lone surrogate cannot be UTF-8 (the
    tokenizer refuses it), PostgreSQL cannot store NUL (the log would lose the batch), and other
    control characters (ESC, ...) would reach the review UI and exported CSVs as terminal or
    spreadsheet payloads; tab, newline and carriage return are ordinary text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"character {e.start} ({text[e.start]!r}) is a lone surrogate, not a character"
    for i, char in enumerate(text):
        if unicodedata.category(char) == "Cc" and char not in ALLOWED_CONTROLS:
            name = _CONTROL_NAMES.get(ord(char), "a control character")
            return (f"character {i} is {name} (U+{ord(char):04X}); control characters other than "
                    "tab, newline and carriage return are refused")
    return None


def is_blank(text: str) -> bool:
    """Nothing visible: only whitespace and invisible format characters (zero-width space and
    joiners, word joiner, BOM, soft hyphen, bidi controls: Unicode category Cf)."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)


def check_content_type(value: str | None) -> None:
    """Only `application/json` bodies: a browser page can post text/plain or a form to any
    origin without asking (a CORS "simple request"), but not JSON."""
    media_type = (value or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise InputError(415, "unsupported_media_type",
                         f"Content-Type must be application/json, got {media_type or 'none'!r}",
                         "content-type")


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
        if is_blank(text):
            raise InputError(422, "empty_text", "must not be empty or only whitespace and "
                             "invisible characters (zero-width, bidi controls)", f"texts[{i}]")
        if len(text) > max_chars:
            raise InputError(413, "too_long",
                             f"has {len(text)} characters; the limit is {max_chars}",
                             f"texts[{i}]")
        problem = text_problem(text)
        if problem:
            raise InputError(422, "invalid_text", problem, f"texts[{i}]")
    return texts
