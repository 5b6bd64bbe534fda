"""Production against the candidate on the same holdout rows: paired-bootstrap deltas of the
headline metrics and of each slice, behaviour deltas, the rows whose prediction flips, and what
changed in data and params between the two."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from pipelines.analysis.metrics import slice_masks
from pipelines.analysis.stats import paired_bootstrap_delta
from pipelines.core.production import ProductionRecord
from pipelines.runtime.metadata import ModelMetadata
from pipelines.runtime.params import CompareParams


def fast_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int = 2) -> float:
    """Macro-F1 from a bincount confusion matrix (the bootstrap calls it thousands of times)."""
    cm = np.bincount(y_true * n_labels + y_pred, minlength=n_labels * n_labels)
    cm = cm.reshape(n_labels, n_labels)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)))


def _accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float((y == p).mean())


def _auc(score_fn):
    def metric(y_pos: np.ndarray, score: np.ndarray) -> float:
        return float(score_fn(y_pos, score)) if 0 < y_pos.sum() < len(y_pos) else 0.0
    return metric


def metric_deltas(y: np.ndarray, prod: np.ndarray, cand: np.ndarray, c: CompareParams
                  ) -> dict[str, dict[str, float]]:
    """Delta (candidate - production) and paired-bootstrap interval of the headline metrics."""
    n = prod.shape[1]  # one column per label
    y_pos = (y == n - 1).astype(int)
    pred_p, pred_c = prod.argmax(axis=1), cand.argmax(axis=1)
    args = {"samples": c.bootstrap_samples, "confidence": c.confidence, "seed": c.seed}
    return {
        "macro_f1": paired_bootstrap_delta(y, pred_p, pred_c,
                                           lambda a, b: fast_macro_f1(a, b, n), **args),
        "accuracy": paired_bootstrap_delta(y, pred_p, pred_c, _accuracy, **args),
        # The AUCs are costlier per resample; a fifth of the resamples keeps them quick.
        "roc_auc": paired_bootstrap_delta(y_pos, prod[:, -1], cand[:, -1], _auc(roc_auc_score),
                                          **(args | {"samples": max(1, c.bootstrap_samples // 5)})),
        "pr_auc": paired_bootstrap_delta(y_pos, prod[:, -1], cand[:, -1],
                                         _auc(average_precision_score),
                                         **(args | {"samples": max(1, c.bootstrap_samples // 5)})),
    }


def slice_deltas(y: np.ndarray, prod: np.ndarray, cand: np.ndarray, texts: list[str],
                 slices: dict[str, str], c: CompareParams) -> dict[str, dict[str, Any]]:
    """Per-slice macro-F1 of both models with the delta's paired-bootstrap interval."""
    n = prod.shape[1]  # one column per label
    pred_p, pred_c = prod.argmax(axis=1), cand.argmax(axis=1)
    out = {}
    for name, mask in slice_masks(texts, slices).items():
        entry: dict[str, Any] = {"n": int(mask.sum())}
        if mask.any():
            entry["production"] = round(fast_macro_f1(y[mask], pred_p[mask], n), 4)
            entry["candidate"] = round(fast_macro_f1(y[mask], pred_c[mask], n), 4)
            entry["macro_f1"] = paired_bootstrap_delta(
                y[mask], pred_p[mask], pred_c[mask], lambda a, b: fast_macro_f1(a, b, n),
                c.bootstrap_samples, c.confidence, c.seed)
        else:
            entry.update(production=None, candidate=None,
                         macro_f1={"delta": 0.0, "low": 0.0, "high": 0.0})
        out[name] = entry
    return out


def behaviour_deltas(prod: dict, cand: dict) -> dict[str, dict[str, Any]]:
    out = {}
    for name in sorted(set(prod) | set(cand)):
        metric = "flip_rate" if "flip_rate" in (prod.get(name) or cand[name]) else "pass_rate"
        p = prod.get(name, {}).get(metric)
        c = cand.get(name, {}).get(metric)
        out[name] = {"metric": metric, "production": p, "candidate": c,
                     "delta": round(c - p, 4) if p is not None and c is not None else None}
    return out


def prediction_flips(frame: pd.DataFrame, y: np.ndarray, prod: np.ndarray, cand: np.ndarray,
                     labels: list[str], limit: int, mask_text: bool) -> dict[str, Any]:
    """Holdout rows where the two models disagree, largest score change first (at most limit)."""
    pred_p, pred_c = prod.argmax(axis=1), cand.argmax(axis=1)
    idx = np.flatnonzero(pred_p != pred_c)
    order = idx[np.argsort(-np.abs(cand[idx, -1] - prod[idx, -1]), kind="stable")][:limit]
    rows = []
    for i in order:
        text = str(frame.text.iloc[i])
        rows.append({
            "id": str(frame["id"].iloc[i]) if "id" in frame else str(i),
            "text": f"sha256:{hashlib.sha256(text.encode()).hexdigest()[:12]}" if mask_text
            else text,
            "actual": labels[y[i]], "production": labels[pred_p[i]],
            "candidate": labels[pred_c[i]],
            "production_score": round(float(prod[i, -1]), 4),
            "candidate_score": round(float(cand[i, -1]), 4),
            "fixed": bool(pred_c[i] == y[i]),
        })
    fixed = int(((pred_c == y) & (pred_p != y)).sum())
    broken = int(((pred_p == y) & (pred_c != y)).sum())
    return {"total": int(len(idx)), "fixed": fixed, "broken": broken, "shown": rows,
            "masked": mask_text}


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list]:
    keys = sorted(set(old) | set(new))
    return {k: [old.get(k), new.get(k)] for k in keys if old.get(k) != new.get(k)}


def data_and_params_changes(production: ProductionRecord | None, candidate: ModelMetadata
                            ) -> dict[str, Any]:
    if production is None:
        return {"dataset": {"candidate": candidate.dataset.model_dump()},
                "params": {"candidate": candidate.params}}
    return {
        "dataset": {"production": production.dataset.model_dump(),
                    "candidate": candidate.dataset.model_dump(),
                    "same": production.dataset.md5 == candidate.dataset.md5},
        "kind": [production.kind, candidate.kind],
        "params": _changes(production.params, candidate.params)
        if production.kind == candidate.kind
        else {"production": production.params, "candidate": candidate.params},
    }
