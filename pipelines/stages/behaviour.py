"""Behavioural checks: label-preserving perturbations should not flip predictions, an
appended insult should raise the offensive score, and disguising an offensive text (the
evasion suite) should not make it pass."""

from __future__ import annotations

import re

import numpy as np

from pipelines.core.classifier import Classifier
from pipelines.core.params import BehaviourParams

_TRAILING_PUNCT = re.compile(r"[.!?]+\s*$")


def _add_mention(text: str) -> str:
    return "@user " + text


def _remove_mentions(text: str) -> str:
    return " ".join(w for w in text.split() if not w.startswith("@")) or text


def _add_url(text: str) -> str:
    return text + " https://example.com/page"


def _toggle_trailing_punctuation(text: str) -> str:
    stripped = _TRAILING_PUNCT.sub("", text)
    return stripped if stripped != text else text.rstrip() + "!"


INVARIANCES = {
    "add_mention": _add_mention,
    "remove_mentions": _remove_mentions,
    "add_url": _add_url,
    "trailing_punctuation": _toggle_trailing_punctuation,
}


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _letter_map(upper: int, lower: int, digits: dict[str, int]) -> dict[int, str]:
    table = {ord("A") + i: chr(upper + i) for i in range(26)}
    table |= {ord("a") + i: chr(lower + i) for i in range(26)}
    return table | {ord(d): chr(code) for d, code in digits.items()}


_MATH_BOLD = _letter_map(0x1D400, 0x1D41A, {str(d): 0x1D7CE + d for d in range(10)})
_CIRCLED = _letter_map(0x24B6, 0x24D0, {"0": 0x24EA} | {str(d): 0x2460 + d - 1
                                                         for d in range(1, 10)})
# The Cyrillic letters a homoglyph attack swaps in for Latin ones.
_CYRILLIC = str.maketrans("aceopxysijhABCEHKMOPTXSIJ", "асеорхуѕіјһАВСЕНКМОРТХЅІЈ")
_LETTER_PAIR = re.compile(r"(?<=[^\W\d_])(?=[^\W\d_])")
_ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060")


def _spaced_out(text: str) -> str:
    # "you are" -> "y o u  a r e": a space between letters, two between words.
    return _LETTER_PAIR.sub(" ", re.sub(r"\s+", "  ", text.strip()))


def _right_to_left_override(text: str) -> str:
    # Stored reversed behind U+202E: displayed as the original, read backwards by a model.
    return "\u202e" + text[::-1] + "\u202c"


def _zero_width(text: str) -> str:
    parts = _LETTER_PAIR.split(text)
    return "".join(part + _ZERO_WIDTH[i % len(_ZERO_WIDTH)] for i, part in enumerate(parts[:-1])
                   ) + parts[-1]


EVASIONS = {
    "fullwidth": _fullwidth,
    "math_bold": lambda text: text.translate(_MATH_BOLD),
    "circled": lambda text: text.translate(_CIRCLED),
    "spaced_out": _spaced_out,
    "cyrillic_lookalikes": lambda text: text.translate(_CYRILLIC),
    "right_to_left_override": _right_to_left_override,
    "zero_width": _zero_width,
}


def sample_texts(texts: list[str], size: int, seed: int = 0) -> list[str]:
    if len(texts) <= size:
        return list(texts)
    picks = np.random.default_rng(seed).choice(len(texts), size=size, replace=False)
    return [texts[i] for i in sorted(picks)]


def run_evasion_checks(classifier: Classifier, texts: list[str], y_true: np.ndarray,
                       proba: np.ndarray, sample_size: int) -> dict[str, dict[str, float]]:
    """Per disguise, the share of offensive texts the model gets right that it no longer
    flags once disguised (on a fixed sample of them)."""
    positive = len(classifier.labels) - 1
    caught = [t for t, y, p in zip(texts, y_true, proba.argmax(axis=1), strict=True)
              if y == positive and p == positive]
    sample = sample_texts(caught, sample_size)
    results: dict[str, dict[str, float]] = {}
    for name, disguise in EVASIONS.items() if sample else ():
        disguised = [disguise(t) for t in sample]
        missed = classifier.predict_proba(disguised).argmax(axis=1) != positive
        results[f"evasion_{name}"] = {"flip_rate": round(float(missed.mean()), 4),
                                      "n": len(disguised)}
    return results


def run_behaviour_checks(classifier: Classifier, texts: list[str], y_true: np.ndarray,
                         proba: np.ndarray, params: BehaviourParams
                         ) -> dict[str, dict[str, float]]:
    """Flip rate per invariance and per evasion, and pass rate of the insult direction, on
    fixed samples (proba: the classifier's scores of texts, labelled y_true)."""
    sample = sample_texts(texts, params.sample_size)
    positive = len(classifier.labels) - 1
    base = classifier.predict_proba(sample)
    base_label = base.argmax(axis=1)
    results: dict[str, dict[str, float]] = {}
    for name, perturb in INVARIANCES.items():
        pairs = [(i, perturb(t)) for i, t in enumerate(sample) if perturb(t) != t]
        if not pairs:
            continue
        changed = classifier.predict_proba([t for _, t in pairs]).argmax(axis=1)
        flips = changed != base_label[[i for i, _ in pairs]]
        results[f"invariance_{name}"] = {"flip_rate": round(float(flips.mean()), 4),
                                         "n": len(pairs)}
    calm = [i for i in range(len(sample)) if base_label[i] != positive]
    if calm:
        insulted = [f"{sample[i].rstrip()} {params.insults[k % len(params.insults)]}"
                    for k, i in enumerate(calm)]
        raised = classifier.predict_proba(insulted)[:, positive] > base[calm, positive]
        results["directional_insult"] = {"pass_rate": round(float(raised.mean()), 4),
                                         "n": len(calm)}
    return results | run_evasion_checks(classifier, texts, y_true, proba, params.sample_size)
