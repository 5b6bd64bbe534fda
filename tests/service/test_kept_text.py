"""serve.log_text: sample keeps flagged, uncertain and a random share of texts, redacted."""

from __future__ import annotations

import math
import random

import pytest

from service.kept_text import TextPolicy, redact

CALM = {"not-offensive": 0.95, "offensive": 0.05}
FLAGGED = {"not-offensive": 0.1, "offensive": 0.9}
UNSURE = {"not-offensive": 0.55, "offensive": 0.45}


@pytest.mark.parametrize(("text", "expected"), [
    ("write to jane.doe+x@mail.example.org now", "write to EMAIL now"),
    ("see https://example.com/a?b=c and www.foo.net/x", "see URL and URL"),
    ("@bob_99 you again", "@user you again"),
    ("call +44 20 7946 0958 or (555) 123-4567", "call PHONE or PHONE"),
    ("call 555.123.4567 tonight", "call PHONE tonight"),
    ("@user said URL", "@user said URL"),  # the training data's own placeholders stay
    ("in 2026 I scored 12-3 and 1,000 points", "in 2026 I scored 12-3 and 1,000 points"),
    ("you are a stupid idiot", "you are a stupid idiot"),
])
def test_redaction_replaces_obvious_personal_data_only(text, expected):
    assert redact(text) == expected


def test_flagged_and_uncertain_texts_are_always_kept_redacted():
    policy = TextPolicy("sample", share=0.0, uncertain=0.15)
    assert policy.keep("idiot @bob", "offensive", FLAGGED, "offensive") == \
        ("idiot @user", "flagged")
    assert policy.keep("hmm a@b.io", "not-offensive", UNSURE, "offensive") == \
        ("hmm EMAIL", "uncertain")
    assert policy.keep("lovely day", "not-offensive", CALM, "offensive") == (None, None)


def test_the_random_share_holds_and_is_drawn_regardless_of_the_label():
    policy = TextPolicy("sample", share=0.1, uncertain=0.15, rng=random.Random(1))
    n = 20000
    reasons = [policy.keep(f"t{i}", "offensive" if i % 2 else "not-offensive",
                           FLAGGED if i % 2 else CALM, "offensive")[1] for i in range(n)]
    sampled = [i for i, r in enumerate(reasons) if r == "sampled"]
    bound = 4 * math.sqrt(n * 0.1 * 0.9)  # four standard deviations of the binomial count
    assert abs(len(sampled) - n * 0.1) < bound
    # Unbiased: flagged (odd) rows are as likely to be in the random share as calm ones.
    assert abs(sum(i % 2 for i in sampled) / len(sampled) - 0.5) < 0.05
    # Everything flagged is kept; calm rows only when sampled.
    assert all(r in ("sampled", "flagged") for r in reasons[1::2])
    assert set(reasons[0::2]) == {"sampled", None}


def test_text_mode_keeps_verbatim_and_hash_mode_keeps_nothing():
    assert TextPolicy("text").keep("mail a@b.io", "offensive", FLAGGED, "offensive") == \
        ("mail a@b.io", "all")
    assert TextPolicy("hash").keep("x", "offensive", FLAGGED, "offensive") == (None, None)
