"""Values from data made inert in GitHub markdown: every markdown writer (the PR body, job
summaries, issues) passes texts, ids, labels and versions through `escape` or `code`.

GitHub renders a PR body as GFM, then links @mentions, #refs and bare URLs in the resulting
HTML, so backslash escapes alone cannot stop a ping: those get a zero-width joiner (U+200D)
after the character that starts them, which a reader does not see and GitHub does not link.
"""

from __future__ import annotations

import re
import unicodedata

ZWJ = "\u200d"
# Punctuation that makes GFM inline syntax anywhere in a line (emphasis, strikethrough, links
# and images, code spans, table cells): escaped with a backslash, which renders it as itself.
_PUNCTUATION = re.compile(r"([\\`*_\[\]|~])")
# What makes a block only at the start of a line (heading, list item, setext underline).
_BLOCK_START = re.compile(r"^([#+=-])")
_LIST_NUMBER = re.compile(r"^(\d+)([.)])")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# After escaping: @mention and email autolinks, #123 / GH-123 refs, scheme:// and www. autolinks.
_PINGS = [(re.compile(r"@"), "@" + ZWJ),
          (re.compile(r"#"), "#" + ZWJ),
          (re.compile(r"(?i)\b(gh)-"), r"\1" + ZWJ + "-"),
          (re.compile(r":(//)"), ":" + ZWJ + r"\1"),
          (re.compile(r"(?i)\b(www)\."), r"\1" + ZWJ + ".")]
_SAFE_CODE = re.compile(r"[\w.+/:-]+", re.ASCII)


def _one_line(text: str) -> str:
    """Line breaks and other control characters become spaces: a value stays on its line (a
    table row, a list item) and cannot start a block of its own."""
    return "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


def escape(value: object, limit: int | None = None) -> str:
    """`value` as inline markdown text that renders as typed: no HTML (comments, tags), no
    links or images, no emphasis, no table cell breaks, no mentions, refs or autolinks.
    `limit` cuts the raw text (before escaping, so no escape is cut in half) and marks the cut."""
    text = _one_line(str(value))
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    text = "".join(_HTML.get(c, c) for c in text)
    text = _PUNCTUATION.sub(r"\\\1", text)
    text = _LIST_NUMBER.sub(r"\1\\\2", _BLOCK_START.sub(r"\\\1", text))
    for pattern, replacement in _PINGS:
        text = pattern.sub(replacement, text)
    return text


def code(value: object) -> str:
    """A short identifier (version, md5, file:line) as a code span when it has only safe
    characters; anything else as escaped text, since a backtick or `|` from data could end the
    span or the table cell."""
    text = str(value)
    return f"`{text}`" if _SAFE_CODE.fullmatch(text) else escape(text)
