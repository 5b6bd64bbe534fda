"""Paired statistics for two models scored on the same texts: bootstrap intervals and McNemar."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import binomtest, chi2

Metric = Callable[[np.ndarray, np.ndarray], float]


def paired_bootstrap_delta(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                           metric: Metric, samples: int, confidence: float,
                           seed: int) -> dict[str, float]:
    """metric(b) - metric(a) with a percentile interval from resampling the same rows for both."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    point = metric(y_true, pred_b) - metric(y_true, pred_a)
    if n == 0:
        return {"delta": 0.0, "low": 0.0, "high": 0.0}
    deltas = np.empty(samples)
    for k in range(samples):
        idx = rng.integers(0, n, n)
        deltas[k] = metric(y_true[idx], pred_b[idx]) - metric(y_true[idx], pred_a[idx])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return {"delta": round(float(point), 4), "low": round(float(low), 4),
            "high": round(float(high), 4)}


def mcnemar(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, float]:
    """McNemar's test on the rows exactly one model gets right (exact binomial below 25 rows)."""
    a_right, b_right = pred_a == y_true, pred_b == y_true
    only_a = int((a_right & ~b_right).sum())
    only_b = int((~a_right & b_right).sum())
    discordant = only_a + only_b
    if discordant == 0:
        p_value = 1.0
    elif discordant < 25:
        p_value = binomtest(only_b, discordant, 0.5).pvalue
    else:
        statistic = (abs(only_a - only_b) - 1) ** 2 / discordant  # with continuity correction
        p_value = float(chi2.sf(statistic, df=1))
    return {"only_production_right": only_a, "only_candidate_right": only_b,
            "p_value": round(float(p_value), 6)}
