"""The PR body renders training texts, ids and labels from a data change: each hostile payload
below, in every place data reaches, must render as typed, keep the tables' shape, leave the rest
of the body (the gate's verdict) visible, and ping, link or embed nothing."""

from __future__ import annotations

import html
import re
from types import SimpleNamespace

import pytest
from markdown_it import MarkdownIt

from pipelines.analysis.pr_body import flips_lines, label_noise_lines
from pipelines.core.markdown import ZWJ, code, escape

PAYLOADS = {
    "html_comment": "<!-- everything after this is hidden",
    "html_tags": '<img src=x onerror=alert(1)><details open><summary>x</summary>',
    "closing_tags": "</td></tr></table><h1>PROMOTE</h1>",
    "link": "[the gate passed](https://evil.example/x)",
    "image": "![tracker](https://evil.example/pixel.png)",
    "reference_link": "[x][1]\n\n[1]: https://evil.example",
    "bare_url": "see https://evil.example/a and www.evil.example and mail me@evil.example",
    "mention": "@octocat and @org/team please merge",
    "issue_ref": "fixes #1, GH-2 and owner/repo#3",
    "pipe": "a | b | c | d",
    "newlines": "first\n\n## ✅ PROMOTE\n\n- [x] all checks passed\r\nlast",
    "backticks": "``` fence\n`code` and `` double",
    "emphasis": "**bold** _it_ ~~struck~~ \\escaped",
    "entity": "&lt;!-- &#64;octocat &amp;",
    "heading_start": "# heading\n= setext\n1. list",
}
VERDICT = "VERDICT STAYS VISIBLE"
TAGS = {"p", "table", "thead", "tbody", "tr", "th", "td", "code", "strong"}
PINGS = [re.compile(p) for p in (r"(?<![\w`])@[A-Za-z0-9]", r"#\d", r"(?i)\bgh-\d",
                                 r"(?i)\b[a-z][a-z0-9+.-]*://", r"(?i)\bwww\.",
                                 r"[\w.+-]+@[\w-]+\.\w")]


def _noise(payload: str) -> dict:
    row = {"file": "data/train.csv", "line": 7, "id": payload, "label": payload,
           "suggested": payload, "confidence": 0.9, "text": payload}
    estimate = {"share": 0.2, "low": 0.1, "high": 0.3, "rows": 10, "wrong_rows": 2,
                "scorer": "out_of_fold"}
    return {"production_data": "abc", "changed_rows": 10, "reviewed_rows": 0, "max_share": 0.05,
            "confidence": 0.95, "estimate": estimate, "flagged": True,
            "flagged_by": [f"out_of_fold/{payload}"],
            "scorers": {"out_of_fold": estimate | {"slices": {payload: estimate}}},
            "suspicious": [row, row]}


def _flips(payload: str) -> SimpleNamespace:
    flip = {"id": payload, "text": payload, "actual": payload, "production": payload,
            "production_score": 0.1, "candidate": payload, "candidate_score": 0.9}
    return SimpleNamespace(flips={"total": 2, "fixed": 1, "broken": 1, "masked": False,
                                  "shown": [flip, flip]})


def _render(payload: str) -> tuple[str, str]:
    """The markdown of the data-fed sections with the verdict after them, and its HTML."""
    body = "\n".join([*label_noise_lines(_noise(payload)), "", *flips_lines(_flips(payload)),
                      "", f"Version {code(payload)}.", "", f"**{VERDICT}**", ""])
    return body, MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(body)


def _visible(rendered: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", rendered))


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_from_data_renders_as_typed_and_cannot_hide_the_verdict_or_ping(name):
    payload = PAYLOADS[name]
    body, rendered = _render(payload)
    assert rendered.rstrip().endswith(f"<p><strong>{VERDICT}</strong></p>"), rendered[-300:]
    # GitHub treats an unclosed `<!--` or tag as HTML where CommonMark renderers may not: no
    # raw `<` may reach the markdown at all (these sections write no HTML of their own).
    assert "<" not in body
    assert {t.lower() for t in re.findall(r"</?([a-zA-Z0-9]+)", rendered)} <= TAGS
    for row in re.findall(r"<tr>(.*?)</tr>", rendered, flags=re.S):
        assert len(re.findall(r"<t[dh]", row)) in (4, 5, 6), row  # no cell split by data
    visible = _visible(rendered)
    for ping in PINGS:
        assert not ping.search(visible), (ping.pattern, visible)
    # What a reader sees is the payload itself (line breaks as spaces, joiners invisible), in
    # every place it was put: 2 suspicious rows x 4 cells, the slice, the flag, 2 flips x 5
    # cells, the version.
    typed = " ".join(payload.split())
    assert " ".join(visible.replace(ZWJ, "").split()).count(typed) == 21


def test_long_texts_are_cut_before_escaping_so_no_escape_is_split():
    text = "x" * 98 + "|<b>"
    cell = escape(text, limit=100)
    assert cell == "x" * 97 + "..." and escape("<" * 200, limit=10) == "&lt;" * 7 + "..."


def test_identifiers_with_only_safe_characters_stay_code_spans():
    assert code("baseline-20260101-abc123") == "`baseline-20260101-abc123`"
    assert code("data/train.csv:1507") == "`data/train.csv:1507`"
    assert code("v1`|@x") == escape("v1`|@x") and "`" not in code("v1`|@x").replace("\\`", "")


def test_pr_body_says_how_many_rows_claim_a_review_without_proof_and_when_it_sampled():
    noise = _noise("x") | {"unproven_review_rows": 600,
                           "sampled": {"changed_rows": 20000, "unchanged_rows": 20000,
                                       "of_unchanged_rows": 50000, "max_rows": 20000}}
    body = "\n".join(label_noise_lines(noise))
    assert "**600 rows claim to come from the review loop without a valid signed review " \
           "record**" in body
    assert "Scored a uniform sample of 20000 changed rows" in body
