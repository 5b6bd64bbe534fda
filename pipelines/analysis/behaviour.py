"""Behavioural checks, as the task declares them (evaluate.behaviour.checks in params.yaml):
label-preserving edits and swapped group terms should not flip predictions, a directional
template should raise the positive score, templated texts should get their expected label, and
disguising a caught positive text (the evasion suite) should not make it pass.

Which checks apply, and their lexicons, are part of the task's definition (docs/tasks.md): an
appended insult makes a text offensive, not hateful."""

from __future__ import annotations

import re

import numpy as np

from pipelines.runtime.classifier import Classifier
from pipelines.runtime.errors import UsageError
from pipelines.runtime.params import (
    BehaviourParams,
    DirectionalCheck,
    EvasionCheck,
    InvarianceCheck,
    TemplateCheck,
    TermSwapCheck,
)

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


class BehaviourError(UsageError):
    """A behavioural check names a perturbation or disguise this module does not have."""


def check_names(params: BehaviourParams) -> None:
    """Fail before any scoring when a declared check names an unknown edit or disguise."""
    for name, check in params.checks.items():
        if isinstance(check, InvarianceCheck):
            known, field, items = INVARIANCES, "perturbations", check.perturbations
        elif isinstance(check, EvasionCheck):
            known, field, items = EVASIONS, "disguises", check.disguises
        else:
            continue
        unknown = [item for item in items if item not in known]
        if unknown:
            raise BehaviourError(f"params.yaml evaluate.behaviour.checks.{name}.{field}: unknown "
                                 f"{unknown}; known: {', '.join(known)} "
                                 "(pipelines/analysis/behaviour.py)")


def sample_texts(texts: list[str], size: int, seed: int = 0) -> list[str]:
    if len(texts) <= size:
        return list(texts)
    picks = np.random.default_rng(seed).choice(len(texts), size=size, replace=False)
    return [texts[i] for i in sorted(picks)]


def run_evasion_checks(classifier: Classifier, texts: list[str], y_true: np.ndarray,
                       proba: np.ndarray, sample_size: int, disguises: list[str] | None = None,
                       prefix: str = "evasion") -> dict[str, dict[str, float]]:
    """Per disguise, the share of positive texts the model gets right that it no longer
    flags once disguised (on a fixed sample of them)."""
    positive = len(classifier.labels) - 1
    caught = [t for t, y, p in zip(texts, y_true, proba.argmax(axis=1), strict=True)
              if y == positive and p == positive]
    sample = sample_texts(caught, sample_size)
    results: dict[str, dict[str, float]] = {}
    for name in (list(EVASIONS) if disguises is None else disguises) if sample else ():
        disguised = [EVASIONS[name](t) for t in sample]
        missed = classifier.predict_proba(disguised).argmax(axis=1) != positive
        results[f"{prefix}_{name}"] = {"flip_rate": round(float(missed.mean()), 4),
                                       "n": len(disguised)}
    return results


def _flip_rate(classifier: Classifier, base_label: np.ndarray,
               pairs: list[tuple[int, str]]) -> dict[str, float]:
    changed = classifier.predict_proba([t for _, t in pairs]).argmax(axis=1)
    flips = changed != base_label[[i for i, _ in pairs]]
    return {"flip_rate": round(float(flips.mean()), 4), "n": len(pairs)}


def _filled(templates: list[str], terms: list[str]) -> list[str]:
    """Every template with each term in its {term} slot (a template without one, once)."""
    return [t.replace("{term}", term) for t in templates
            for term in (terms if "{term}" in t else [""])]


def _swap_terms(text: str, terms: list[str]) -> str:
    """Each whole-word occurrence of a term replaced by the next term of the list."""
    pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in terms) + r")\b", re.IGNORECASE)
    lowered = [t.lower() for t in terms]
    return pattern.sub(lambda m: terms[(lowered.index(m.group(0).lower()) + 1) % len(terms)],
                       text)


def run_behaviour_checks(classifier: Classifier, texts: list[str], y_true: np.ndarray,
                         proba: np.ndarray, params: BehaviourParams
                         ) -> dict[str, dict[str, float]]:
    """Every check the task declares, on fixed samples (proba: the classifier's scores of
    texts, labelled y_true): flip rates of invariances, swaps and evasions, pass rates of
    directional and template checks. A check with nothing to measure gives no result."""
    check_names(params)
    sample = sample_texts(texts, params.sample_size)
    positive = len(classifier.labels) - 1
    base = classifier.predict_proba(sample)
    base_label = base.argmax(axis=1)
    calm = [i for i in range(len(sample)) if base_label[i] != positive]
    results: dict[str, dict[str, float]] = {}
    for name, check in params.checks.items():
        if isinstance(check, InvarianceCheck):
            for edit in check.perturbations:
                pairs = [(i, INVARIANCES[edit](t)) for i, t in enumerate(sample)]
                pairs = [(i, t) for i, t in pairs if t != sample[i]]
                if pairs:
                    results[f"{name}_{edit}"] = _flip_rate(classifier, base_label, pairs)
        elif isinstance(check, TermSwapCheck):
            pairs = [(i, _swap_terms(t, check.terms)) for i, t in enumerate(sample)]
            pairs = [(i, t) for i, t in pairs if t != sample[i]]
            if pairs:
                results[name] = _flip_rate(classifier, base_label, pairs)
        elif isinstance(check, DirectionalCheck) and calm:
            variants = _filled(check.templates, check.terms)
            raised_texts = [variants[k % len(variants)].replace("{text}", sample[i].rstrip())
                            for k, i in enumerate(calm)]
            raised = classifier.predict_proba(raised_texts)[:, positive] > base[calm, positive]
            results[name] = {"pass_rate": round(float(raised.mean()), 4), "n": len(calm)}
        elif isinstance(check, TemplateCheck):
            written = _filled(check.templates, check.terms)
            got = classifier.predict_proba(written).argmax(axis=1)
            expected = list(classifier.labels).index(check.expect)
            results[name] = {"pass_rate": round(float((got == expected).mean()), 4),
                             "n": len(written)}
        elif isinstance(check, EvasionCheck):
            results |= run_evasion_checks(classifier, texts, y_true, proba, params.sample_size,
                                          check.disguises, name)
    return results
