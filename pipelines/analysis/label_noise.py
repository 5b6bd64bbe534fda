"""label_noise rule of the validate stage: how much of the new labelling looks wrong.

The rows new or changed since production's data version are scored by models that did not learn
them: the production model, and (when the training split is large enough) a TF-IDF + logistic
regression cross-validated over the new version, out of fold. Every scorer also errs on correct
labels, so its disagreement on the changed rows is read against trusted rows scored the same way:
the unchanged rows for the out-of-fold scorer, the frozen holdout for the production model. What
the disagreement exceeds that reference by, per label, is the share of wrong labels. Rows the
review loop exported (source = feedback.source, proven by a signed review record: see
pipelines/core/provenance.py) are counted but not scored; rows that only claim that source are
scored like any other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.analysis.metrics import slice_masks
from pipelines.core.data import normalise
from pipelines.core.production import (
    WEIGHTS,
    ProductionRecord,
    check_weights,
    production_training_rows,
)
from pipelines.runtime.classifier import load_classifier
from pipelines.runtime.params import LabelNoiseParams, Params

if TYPE_CHECKING:
    from pipelines.analysis.data_checks import SplitScan

SHOWN_CHARS = 200  # of each suspicious row's text; the feedback export matches on it
RULE = "label_noise"
# A scorer whose error rates on the two sides of a label differ by less than this cannot tell a
# wrong label from a hard text; its estimate would be noise.
MIN_SEPARATION = 0.05

AddFinding = Callable[[str, str, int | None, str], None]


def digests(values: list[str]) -> np.ndarray:
    """64-bit digests: what validate keeps per row instead of the text (two different texts
    collide with probability about rows^2 / 2^65: 1e-8 at 600k rows, 1e-6 at 6M)."""
    return np.frombuffer(b"".join(hashlib.blake2b(v.encode("utf-8"), digest_size=8).digest()
                                  for v in values), dtype="<u8").copy()


def pair_digests(normalised: list[str], labels: list[str]) -> np.ndarray:
    """Digests of (normalised text, label): the pairs changed_rows compares."""
    return digests([f"{label}\x1f{key}" for key, label in
                    zip(normalised, labels, strict=True)])


def changed_rows(pairs: np.ndarray, production_rows: pd.DataFrame) -> np.ndarray:
    """Rows whose (text, label) pair production's data lacks: new texts and relabelled ones."""
    known = pair_digests([normalise(t) for t in production_rows.text],
                         list(production_rows.label))
    return ~np.isin(pairs, known)


def sample(positions: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """At most cap of these positions, uniformly without replacement, in file order."""
    if len(positions) <= cap:
        return positions
    return np.sort(rng.choice(positions, cap, replace=False))


def out_of_fold_proba(texts: list[str], y: np.ndarray, n_labels: int, folds: int, seed: int
                      ) -> np.ndarray:
    """Class probabilities of each row from a TF-IDF + logistic regression that never saw it."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    # The vocabulary and idf see no labels, so fitting them once on all rows leaks nothing.
    features = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
    proba = np.zeros((len(y), n_labels))
    for fit_rows, held_rows in StratifiedKFold(folds, shuffle=True, random_state=seed).split(
            features, y):
        # tol 1e-3 halves liblinear's time for the same out-of-fold accuracy (0.736) here.
        model = LogisticRegression(C=1.0, solver="liblinear", class_weight="balanced", tol=1e-3)
        model.fit(features[fit_rows], y[fit_rows])
        proba[np.ix_(held_rows, model.classes_)] = model.predict_proba(features[held_rows])
    return proba


def wrong_label_share(y: np.ndarray, proba: np.ndarray, y_ref: np.ndarray,
                      proba_ref: np.ndarray, n_labels: int, lp: LabelNoiseParams,
                      rng: np.random.Generator) -> dict[str, Any] | None:
    """Share of rows whose label is wrong, with a parametric bootstrap interval; None if unknowable.

    For rows labelled i, the scorer's doubt 1 - p_i averages A_i over correctly labelled rows and
    B_i over rows whose true label is another (both measured on the reference), so the changed
    rows' average D_i = (1 - r_i) A_i + r_i B_i gives r_i, the wrong share among them.
    """
    groups = []  # per label: doubt on the changed rows, on reference rows with it, without it
    for i in range(n_labels):
        groups.append((1 - proba[y == i, i], 1 - proba_ref[y_ref == i, i],
                       1 - proba_ref[y_ref != i, i]))
    n = np.array([len(g[0]) for g in groups])
    used = n > 0
    if not used.any() or any(min(len(g[1]), len(g[2])) < lp.min_reference_rows
                             for g, u in zip(groups, used, strict=True) if u):
        return None
    means = np.array([[g.mean() if len(g) else 0.0 for g in group] for group in groups])
    if (means[used, 2] - means[used, 1] < MIN_SEPARATION).any():
        return None
    errors = np.array([[g.std() / np.sqrt(len(g)) if len(g) else 0.0 for g in group]
                       for group in groups])

    def share(m: np.ndarray) -> np.ndarray:  # m[..., label, (D, A, B)]
        gap = m[..., 2] - m[..., 1]
        wrong = np.clip((m[..., 0] - m[..., 1]) / np.where(gap > 0, gap, np.nan), 0.0, 1.0)
        return np.nansum(np.where(used, wrong * n, 0.0), axis=-1) / n.sum()

    draws = share(rng.normal(means, errors, (lp.bootstrap_samples, *means.shape)))
    tail = (1 - lp.confidence) / 2
    point = float(share(means))
    return {"rows": int(n.sum()), "share": round(point, 4), "wrong_rows": round(point * n.sum()),
            "low": round(float(np.quantile(draws, tail)), 4),
            "high": round(float(np.quantile(draws, 1 - tail)), 4)}


def scorer_estimates(y: np.ndarray, proba: np.ndarray, y_ref: np.ndarray, proba_ref: np.ndarray,
                     masks: dict[str, np.ndarray], ref_masks: dict[str, np.ndarray],
                     n_labels: int, lp: LabelNoiseParams) -> dict[str, Any]:
    """The overall estimate of one scorer and one per slice with enough changed rows."""
    rng = np.random.default_rng(lp.seed)
    overall = wrong_label_share(y, proba, y_ref, proba_ref, n_labels, lp, rng) or {}
    slices = {}
    for name, mask in masks.items():
        if mask.sum() >= lp.min_slice_rows:
            found = wrong_label_share(y[mask], proba[mask], y_ref[ref_masks[name]],
                                      proba_ref[ref_masks[name]], n_labels, lp, rng)
            if found:
                slices[name] = found
    return overall | {"slices": slices}


def rank_suspicious(y: np.ndarray, proba: np.ndarray) -> list[int]:
    """Changed rows whose label confidently disagrees (confident learning), most confident first."""
    from cleanlab.filter import find_label_issues

    if len(np.unique(y)) < 2:  # confident learning needs every label among the rows it judges
        issues = np.flatnonzero(proba.argmax(axis=1) != y)
        return [int(i) for i in issues[np.argsort(proba[issues, y[issues]])]]
    return [int(i) for i in find_label_issues(y, proba, return_indices_ranked_by="self_confidence")]


def _skipped(reason: str) -> dict[str, Any]:
    return {"scored": False, "reason": reason, "flagged": False, "flagged_by": []}


def check_label_noise(params: Params, train: SplitScan, holdout: SplitScan,
                      record: ProductionRecord | None, add: AddFinding, weights: Path = WEIGHTS
                      ) -> dict[str, Any]:
    """Estimate the share of wrong labels among rows new or changed since production's data.

    Above validate.label_noise.max_rows changed (or unchanged) rows, a uniform sample of that
    many is scored; the bootstrap interval then covers the sampling error too, and only sampled
    rows can be listed as suspicious. Only the sampled rows' texts are read (a second pass)."""
    lp, labels = params.validate_.label_noise, list(params.data.labels)
    if params.validate_.severity.label_noise == "off":
        return _skipped("validate.severity.label_noise is off")
    if record is None:
        return _skipped("no production data version to compare with")
    usable = (train.labels >= 0) & (train.norm != 0)
    production_rows = production_training_rows(record.dataset, params.data.train_file)
    new_pair = changed_rows(train.pairs, production_rows)
    # Reviewers correct the predictions the model was unsure of or got wrong, so the scorers'
    # doubt on these rows is how they were chosen, not a sign of a wrong label. Only rows a
    # signed review record proves (validate's feedback_unproven rule) are left out.
    reviewed_changed = int((usable & train.reviewed & new_pair).sum())
    unproven = int((usable & train.claims_review & ~train.reviewed & new_pair).sum())
    usable &= ~train.reviewed
    changed_all = usable & new_pair
    report = {"scored": True, "production_data": record.dataset.md5,
              "changed_rows": int(changed_all.sum()), "reviewed_rows": reviewed_changed,
              "unproven_review_rows": unproven,
              "max_share": lp.max_share, "confidence": lp.confidence}
    if not changed_all.any():
        return report | summarise({}, lp) | {"suspicious": []}
    rng = np.random.default_rng(lp.seed)
    picked_changed = sample(np.flatnonzero(changed_all), lp.max_rows, rng)
    picked_reference = sample(np.flatnonzero(usable & ~new_pair), lp.max_rows, rng)
    if len(picked_changed) < changed_all.sum() or \
            len(picked_reference) < (usable & ~new_pair).sum():
        report["sampled"] = {"changed_rows": len(picked_changed),
                             "unchanged_rows": len(picked_reference),
                             "of_unchanged_rows": int((usable & ~new_pair).sum()),
                             "max_rows": lp.max_rows}
    picked = np.union1d(picked_changed, picked_reference)
    rows = train.rows_at(picked)
    changed = np.isin(picked, picked_changed)
    y_all = np.array([labels.index(label) for label in rows.label])
    y, texts = y_all[changed], list(rows.text[changed])
    masks = slice_masks(texts, params.evaluate.slices)
    scorers, probas = {}, []

    weights_dir, metadata = check_weights(record, weights)
    classifier = load_classifier(weights_dir, metadata=metadata)
    trusted = holdout.rows_at(np.flatnonzero(holdout.labels >= 0))
    y_hold, hold_texts = np.array([labels.index(x) for x in trusted.label]), list(trusted.text)
    probas.append(classifier.predict_proba(texts))
    scorers["production"] = {"model": record.version, "reference": "frozen holdout"} | \
        scorer_estimates(y, probas[-1], y_hold, classifier.predict_proba(hold_texts), masks,
                         slice_masks(hold_texts, params.evaluate.slices), len(labels), lp)

    counts = np.bincount(y_all, minlength=len(labels))
    if len(rows) >= lp.min_cv_rows and counts.min() >= lp.folds and (~changed).any():
        oof = out_of_fold_proba(list(rows.text), y_all, len(labels), lp.folds, lp.seed)
        probas.append(oof[changed])
        ref_masks = slice_masks(list(rows.text[~changed]), params.evaluate.slices)
        scorers["out_of_fold"] = {"model": f"TF-IDF + logistic regression, {lp.folds} folds",
                                  "reference": "unchanged rows"} | \
            scorer_estimates(y, oof[changed], y_all[~changed], oof[~changed], masks, ref_masks,
                             len(labels), lp)

    report |= summarise(scorers, lp)
    lines = [int(i) for i in rows.index[changed]]  # rows_at indexes rows by their file line
    ids = list(rows["id"][changed]) if "id" in rows else [None] * len(lines)
    proba = np.mean(probas, axis=0)
    report["suspicious"] = [
        {"file": train.file, "line": lines[i], "id": ids[i], "label": labels[y[i]],
         "suggested": labels[int(proba[i].argmax())], "confidence": round(float(proba[i].max()), 4),
         "text": texts[i][:SHOWN_CHARS]}
        for i in rank_suspicious(y, proba)[: lp.max_listed]]
    if report["flagged"]:
        add(RULE, train.file, None, finding_message(report, train.file))
    return report


def summarise(scorers: dict[str, dict], lp: LabelNoiseParams) -> dict[str, Any]:
    """The headline estimate (out of fold when it ran: same data, same distribution) and flags."""
    headline = next((name for name in ("out_of_fold", "production") if scorers.get(name, {})
                     .get("share") is not None), None)
    flagged_by = []
    for name, found in scorers.items():
        parts = [("", found)] + [(f"/{s}", v) for s, v in found["slices"].items()]
        flagged_by += [name + where for where, v in parts if v.get("low", 0) > lp.max_share]
    estimate = None if headline is None else {
        k: scorers[headline][k] for k in ("share", "low", "high", "rows", "wrong_rows")
    } | {"scorer": headline}
    return {"estimate": estimate, "scorers": scorers, "flagged": bool(flagged_by),
            "flagged_by": flagged_by}


def _pct(share: float) -> str:
    return f"{100 * share:.1f} %"


def describe(found: dict[str, Any]) -> str:
    """'31.7 % [26.7 %, 36.3 %]': an estimate with its interval."""
    return f"{_pct(found['share'])} [{_pct(found['low'])}, {_pct(found['high'])}]"


def flagged_slices(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each slice some scorer flagged, with the headline scorer's estimate when it has one."""
    found: dict[str, dict[str, Any]] = {}
    headline = (report.get("estimate") or {}).get("scorer")
    for where in report["flagged_by"]:
        scorer, _, name = where.partition("/")
        if name and (name not in found or scorer == headline):
            found[name] = report["scorers"][scorer]["slices"][name]
    return found


def finding_message(report: dict[str, Any], train_file: str, named: int = 10) -> str:
    """One line: the estimate, the slices that exceed the limit, and the worst rows by file:line."""
    estimate = report["estimate"]
    others = [f"{name.replace('_', '-')}: {describe(found)}"
              for name, found in report["scorers"].items()
              if name != estimate["scorer"] and found.get("share") is not None]
    # A slice is worth naming only when the changed rows as a whole stay under the limit.
    overall_flagged = any("/" not in where for where in report["flagged_by"])
    slices = "" if overall_flagged else "; ".join(
        f"{name} {describe(found)} of {found['rows']}"
        for name, found in flagged_slices(report).items())
    worst = ", ".join(f"{train_file}:{s['line']}" for s in report["suspicious"][:named])
    return (f"an estimated {describe(estimate)} of the {report['changed_rows']} rows new or "
            f"changed since production's data ({report['production_data'][:8]}) have wrong labels "
            f"({estimate['scorer'].replace('_', '-')} scorer"
            + (f"; {', '.join(others)}" if others else "") + "), limit "
            f"validate.label_noise.max_share={report['max_share']}"
            + (f"; by slice: {slices}" if slices else "")
            + f"; most suspicious first: {worst} (all ranked in label_noise.suspicious of the "
            "validation report)")
