"""Classification metrics on the frozen holdout, overall and per slice."""

from __future__ import annotations

import re

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """Gap between confidence and accuracy, averaged over equal-width confidence bins."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> float:
    return float(f1_score(y_true, y_pred, labels=list(range(n_labels)), average="macro",
                          zero_division=0))


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, labels: list[str]) -> dict:
    """Macro-F1, per-class P/R/F1, ROC-AUC and PR-AUC of the last (positive) class, ECE."""
    y_pred = proba.argmax(axis=1)
    n = len(labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(n)), zero_division=0)
    positive = (y_true == n - 1).astype(int)
    both_classes = 0 < positive.sum() < len(positive)
    return {
        "n": int(len(y_true)),
        "macro_f1": round(macro_f1(y_true, y_pred, n), 4),
        "accuracy": round(float((y_pred == y_true).mean()), 4),
        "roc_auc": round(float(roc_auc_score(positive, proba[:, -1])), 4) if both_classes else None,
        "pr_auc": round(float(average_precision_score(positive, proba[:, -1])), 4)
        if both_classes else None,
        "calibration_error": round(expected_calibration_error(y_true, proba), 4),
        "per_class": {
            label: {"precision": round(float(p), 4), "recall": round(float(r), 4),
                    "f1": round(float(f), 4), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(range(n))).tolist(),
    }


def slice_masks(texts: list[str], slices: dict[str, str]) -> dict[str, np.ndarray]:
    """A boolean mask per configured slice: which texts match its regex."""
    return {name: np.array([bool(re.search(pattern, t)) for t in texts], dtype=bool)
            for name, pattern in slices.items()}


def slice_metrics(y_true: np.ndarray, proba: np.ndarray, labels: list[str],
                  masks: dict[str, np.ndarray]) -> dict[str, dict]:
    out = {}
    y_pred = proba.argmax(axis=1)
    for name, mask in masks.items():
        out[name] = {
            "n": int(mask.sum()),
            "macro_f1": round(macro_f1(y_true[mask], y_pred[mask], len(labels)), 4)
            if mask.any() else None,
            "accuracy": round(float((y_pred[mask] == y_true[mask]).mean()), 4)
            if mask.any() else None,
        }
    return out


def pr_curve_points(y_true: np.ndarray, proba: np.ndarray, max_points: int = 200) -> list[dict]:
    positive = (y_true == proba.shape[1] - 1).astype(int)
    precision, recall, _ = precision_recall_curve(positive, proba[:, -1])
    step = max(1, len(precision) // max_points)
    keep = list(range(0, len(precision), step))
    if keep[-1] != len(precision) - 1:
        keep.append(len(precision) - 1)
    return [{"recall": round(float(recall[i]), 4), "precision": round(float(precision[i]), 4)}
            for i in keep]
