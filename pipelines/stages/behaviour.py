"""Behavioural checks: label-preserving perturbations should not flip predictions, and an
appended insult should raise the offensive score."""

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


def sample_texts(texts: list[str], size: int, seed: int = 0) -> list[str]:
    if len(texts) <= size:
        return list(texts)
    picks = np.random.default_rng(seed).choice(len(texts), size=size, replace=False)
    return [texts[i] for i in sorted(picks)]


def run_behaviour_checks(classifier: Classifier, texts: list[str],
                         params: BehaviourParams) -> dict[str, dict[str, float]]:
    """Flip rate per invariance and pass rate of the insult direction, on a fixed sample."""
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
    return results
