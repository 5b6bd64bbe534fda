"""What the drift reports measure and when a shift counts as drift.

A column drifts when its shift is large enough to matter (an effect size: the normed
Wasserstein distance, i.e. how far the current values moved in reference standard deviations)
and too large to be sampling noise (a two-sample K-S test at a family-wise level over all
columns, which only bites on small samples). `benchmarks/drift_calibration.py` measures the
false-alarm and detection rates of this rule at the workflow's sample size.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

WORD = re.compile(r"[A-Za-z']+")
METHOD = "wasserstein"  # Evidently's name for the normed Wasserstein distance


def _half(text: str) -> int:
    return hashlib.sha256(text.encode("utf-8")).digest()[0] & 1


class HeldOutVocabulary:
    """Words of a corpus split in two halves by a hash of each text.

    A text is measured against the half it does not hash into, so a text of the corpus is never
    measured against a vocabulary it helped build, and any other text (traffic, a new data
    version) is measured in exactly the same way: the share of unseen words is comparable
    between the corpus's own texts and everything else.
    """

    def __init__(self, texts: Iterable[str]):
        self.halves: tuple[set[str], set[str]] = (set(), set())
        for text in texts:
            self.halves[_half(text)].update(w.lower() for w in WORD.findall(text))

    def unseen_share(self, text: str) -> float:
        """Share of the text's words absent from the other half of the corpus."""
        words = [w.lower() for w in WORD.findall(text)]
        if not words:
            return 0.0
        vocabulary = self.halves[1 - _half(text)]
        return sum(w not in vocabulary for w in words) / len(words)


def normed_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein-1 distance over the reference's standard deviation (as Evidently computes it)."""
    return float(stats.wasserstein_distance(reference, current)
                 / max(float(np.std(reference)), 0.001))


def judge_columns(reference: pd.DataFrame, current: pd.DataFrame,
                  min_effect: Mapping[str, float], significance: float) -> dict[str, dict]:
    """Per column: effect, K-S p-value, and whether both say drift (Bonferroni over columns)."""
    alpha = significance / len(min_effect)
    verdicts = {}
    for column, threshold in min_effect.items():
        ref = reference[column].to_numpy(dtype=float)
        cur = current[column].to_numpy(dtype=float)
        effect = normed_wasserstein(ref, cur)
        # The asymptotic p-value: exact K-S on thousands of tied values is slow and gains nothing.
        p_value = float(stats.ks_2samp(ref, cur, method="asymp").pvalue)
        verdicts[column] = {"effect": effect, "p_value": p_value, "threshold": threshold,
                            "drifted": effect >= threshold and p_value < alpha}
    return verdicts
