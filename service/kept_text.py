"""Which logged texts are kept, and what is removed from them first (serve.log_text).

`sample` (the cluster's setting) keeps enough for the loop to run (the review UI, `make
feedback`, the drift check) without keeping everything: every flagged text, every uncertain one
(top score within `log_text_uncertain` of 0.5) and an unbiased random share of all traffic,
each with obvious personal data replaced, for at most `log_text_retention_days`. The rest is
stored as its SHA-256 only. docs/feedback.md explains the trade-off.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Literal

# Why a text was kept (the `text_kept` column). Only `sampled` and `all` rows are an unbiased
# sample of traffic: drift reads those; review and feedback read every kept text.
KEPT_REASONS = ("all", "sampled", "flagged", "uncertain")
UNBIASED_REASONS = ("all", "sampled")

# Placeholders follow the training data's own convention (TweetEval writes @user and URL).
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"']+")
_MENTION = re.compile(r"(?<![\w@])@\w{1,30}")
_PHONE = re.compile(r"(?<![\w+(])[+(]?\d[\d ().-]{5,}\d(?!\w)")
MIN_PHONE_DIGITS = 7


def _phone(match: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in match.group())
    return "PHONE" if digits >= MIN_PHONE_DIGITS else match.group()


def redact(text: str) -> str:
    """The text with e-mail addresses, URLs, phone numbers and @mentions replaced."""
    text = _EMAIL.sub("EMAIL", text)
    text = _URL.sub("URL", text)
    text = _MENTION.sub(lambda m: m.group() if m.group() == "@user" else "@user", text)
    return _PHONE.sub(_phone, text)


@dataclass
class TextPolicy:
    """How `prediction_rows` stores each text: `text` verbatim (a laptop's own log), `hash`
    (digest only), or `sample` (redacted flagged, uncertain and a random share)."""

    mode: Literal["text", "hash", "sample"] = "text"
    share: float = 0.05
    uncertain: float = 0.15
    rng: random.Random = field(default_factory=random.Random)

    def keep(self, text: str, label: str, scores: dict[str, float],
             positive: str | None) -> tuple[str | None, str | None]:
        """(stored text or None, reason from KEPT_REASONS or None) for one prediction."""
        if self.mode == "text":
            return text, "all"
        if self.mode == "hash":
            return None, None
        # Drawn first and for every row, so the sampled rows stay an unbiased share of traffic.
        if self.rng.random() < self.share:
            reason = "sampled"
        elif positive is not None and label == positive:
            reason = "flagged"
        elif max(scores.values(), default=1.0) < 0.5 + self.uncertain:
            reason = "uncertain"
        else:
            return None, None
        return redact(text), reason
