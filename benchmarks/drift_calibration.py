"""Benchmark: false-alarm and detection rates of the drift rules at the drift check's sample size.

Run by hand from the repository root after `make data production` (seeded; bounded by --trials):
    python benchmarks/drift_calibration.py
Targets: false alarms <= 5 % of in-distribution samples, detection >= 95 % of shifted ones.
Writes benchmarks/drift_calibration.json, which the drift summary's footer quotes.

Everything is carved from production's training data; the holdout is not read. Each trial draws
what `drift report` compares: a reference of compare.drift_sample_rows training texts, a
"traffic" sample of as many other training texts (shifted or not), and for the prediction
columns a reference of as many texts as the holdout has. The serving model's part is played by
the project's baseline recipe fitted on a seeded half of the training data; every sample is drawn
from the other half, so its scores are scores on unseen texts, as on the holdout and in traffic.
Descriptors and scores are computed once per text (they do not depend on the sample), and each
trial judges them with the rules the report uses (drift_measures.judge_columns).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pipelines.analysis.drift_measures import HeldOutVocabulary, judge_columns
from pipelines.analysis.evidently_reports import describe_texts, text_thresholds
from pipelines.core.data import DATA_POINTER
from pipelines.core.production import production_training_rows, read_pointer
from pipelines.monitor.drift import CALIBRATION, PREDICTION_COLUMNS, significance_levels
from pipelines.runtime.params import load_params
from pipelines.training.tfidf import build_pipeline

MENTION = re.compile(r"@\w+\s*")


def documentation_sentences() -> list[str]:
    """Sentences of Python's bundled documentation (pydoc_data): another domain, offline."""
    from pydoc_data.topics import topics

    text = re.sub(r"\s+", " ", " ".join(topics[k] for k in sorted(topics)))
    sentences = re.split(r"(?<=[.!?])\s+", text)
    return [s for s in sentences
            if 20 <= len(s) <= 280 and sum(c.isalpha() for c in s) > len(s) / 2]


@dataclass(frozen=True)
class Shift:
    """A change of traffic: `share` of the texts replaced by `transform` of themselves."""

    name: str
    description: str
    share: float
    transform: Callable[[list[str], np.random.Generator], list[str]]
    target: bool = True  # False: a smaller version of a target, to show where detection ends


def _other_domain(texts: list[str], rng: np.random.Generator) -> list[str]:
    pool = documentation_sentences()
    return [pool[i] for i in rng.integers(0, len(pool), len(texts))]


def _with_url(texts: list[str], rng: np.random.Generator) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))
    return [f"{t} https://t.co/{''.join(rng.choice(letters, 10))}" for t in texts]


SHIFTS = [
    Shift("other_domain", "30 % of the texts from another domain (Python's documentation)", 0.30,
          _other_domain),
    Shift("no_mentions", "@mentions removed from half the texts (a client without replies)", 0.50,
          lambda texts, rng: [MENTION.sub("", t).strip() for t in texts]),
    Shift("urls", "a link appended to a quarter of the texts (a link-spam wave)", 0.25, _with_url),
    Shift("truncated", "every text cut at 100 characters (a client that truncates)", 1.0,
          lambda texts, rng: [t[:100] for t in texts]),
    Shift("shouting", "a fifth of the texts in capitals", 0.20,
          lambda texts, rng: [t.upper() for t in texts]),
    # How small a change goes unnoticed: the same new domain at smaller shares.
    *(Shift(f"other_domain_{pct}pct", f"{pct} % of the texts from another domain", pct / 100,
            _other_domain, target=False) for pct in (5, 10, 15, 20)),
]


@dataclass
class Columns:
    """Per text: the text columns and the calibration model's prediction columns."""

    text: pd.DataFrame
    prediction: pd.DataFrame

    def take(self, rows: np.ndarray) -> Columns:
        return Columns(self.text.iloc[rows].reset_index(drop=True),
                       self.prediction.iloc[rows].reset_index(drop=True))


def columns_of(texts: list[str], vocabulary: HeldOutVocabulary, slices: dict[str, str],
               model, positive_index: int) -> Columns:
    proba = model.predict_proba(texts)
    prediction = pd.DataFrame({"flagged": (proba.argmax(axis=1) == positive_index).astype(float),
                               "score": proba[:, positive_index].astype(float)})
    return Columns(describe_texts(texts, vocabulary, slices), prediction)


def mix(base: Columns, shifted: Columns, replaced: np.ndarray) -> Columns:
    """base with the rows in `replaced` taken from shifted."""
    def blend(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(np.where(replaced[:, None], b.to_numpy(), a.to_numpy()),
                            columns=a.columns)
    return Columns(blend(base.text, shifted.text), blend(base.prediction, shifted.prediction))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400, help="in-distribution samples")
    parser.add_argument("--shift-trials", type=int, default=200, help="samples per shift")
    parser.add_argument("--rows", type=int, default=None,
                        help="sample size (default compare.drift_sample_rows)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=CALIBRATION)
    args = parser.parse_args()
    started = time.perf_counter()
    params = load_params("params.yaml")
    compare, slices, labels = params.compare, params.evaluate.slices, params.data.labels
    rows = args.rows or compare.drift_sample_rows
    production = read_pointer()
    holdout_rows = int(production.metrics["n"])  # the size of the prediction reference
    training = production_training_rows(production.dataset, params.data.train_file,
                                        DATA_POINTER)
    rng = np.random.default_rng(args.seed)

    fit_half = rng.random(len(training)) < 0.5
    model = build_pipeline(params.baseline, list(labels))
    model.fit(list(training.text[fit_half]), [labels.index(y) for y in training.label[fit_half]])
    unseen = np.flatnonzero(~fit_half)  # the texts the calibration model never saw
    if len(unseen) < holdout_rows + rows:
        raise SystemExit(f"{len(unseen)} texts outside the calibration model's half: too few "
                         f"for {holdout_rows} reference and {rows} traffic rows (lower --rows)")
    vocabulary = HeldOutVocabulary(training.text)
    texts = list(training.text)
    print(f"drift calibration: {len(training)} training texts, samples of {rows} rows "
          f"(prediction reference {holdout_rows}); describing and scoring texts")
    everything = columns_of(texts, vocabulary, slices, model, len(labels) - 1)
    pool_texts = [texts[i] for i in unseen]
    shifted = {s.name: columns_of(s.transform(pool_texts, np.random.default_rng(args.seed)),
                                  vocabulary, slices, model, len(labels) - 1) for s in SHIFTS}

    text_min = text_thresholds(compare, slices)
    prediction_min = dict.fromkeys(PREDICTION_COLUMNS, compare.drift_min_label_effect)
    input_level, prediction_level = significance_levels(params)

    def drifted(shift: Shift | None) -> tuple[list[str], bool]:
        """The drifted columns, and whether raw K-S (p < significance, any column) alarms."""
        order = rng.permutation(len(unseen))
        prediction_reference = everything.take(unseen[order[:holdout_rows]]).prediction
        traffic_at = order[holdout_rows:holdout_rows + rows]
        traffic = everything.take(unseen[traffic_at])
        if shift is not None:
            replaced = np.zeros(rows, dtype=bool)
            replaced[rng.choice(rows, round(shift.share * rows), replace=False)] = True
            traffic = mix(traffic, shifted[shift.name].take(traffic_at), replaced)
        others = np.setdiff1d(np.arange(len(training)), unseen[traffic_at])
        text_reference = everything.take(rng.choice(others, rows, replace=False)).text
        verdicts = (judge_columns(text_reference, traffic.text, text_min, input_level)
                    | judge_columns(prediction_reference, traffic.prediction, prediction_min,
                                    prediction_level))
        ks_alone = any(v["p_value"] < compare.drift_significance for v in verdicts.values())
        return [c for c, v in verdicts.items() if v["drifted"]], ks_alone

    def measure(shift: Shift | None, trials: int) -> dict:
        alarms, ks_alarms, columns = 0, 0, Counter()
        for _ in range(trials):
            found, ks_alone = drifted(shift)
            alarms += bool(found)
            ks_alarms += ks_alone
            columns.update(found)
        low, high = stats.binomtest(alarms, trials).proportion_ci(0.95)
        return {"samples": trials, "alarms": alarms, "rate": round(alarms / trials, 4),
                "ci95": [round(low, 4), round(high, 4)], "columns": dict(columns.most_common()),
                "raw_ks_rate": round(ks_alarms / trials, 4)}

    false_alarms = measure(None, args.trials)
    per_shift = {s.name: {"description": s.description, "target": s.target,
                          **measure(s, args.shift_trials)} for s in SHIFTS}
    targets = [per_shift[s.name] for s in SHIFTS if s.target]
    detected = sum(r["alarms"] for r in targets)
    total = sum(r["samples"] for r in targets)
    low, high = stats.binomtest(detected, total).proportion_ci(0.95)
    result = {
        "settings": {"rows": rows, "min_effect": compare.drift_min_effect,
                     "min_label_effect": compare.drift_min_label_effect,
                     "significance": compare.drift_significance},
        "seed": args.seed, "prediction_reference_rows": holdout_rows,
        "false_alarms": false_alarms,
        "detection": {"samples": total, "detected": detected,
                      "rate": round(detected / total, 4), "ci95": [round(low, 4), round(high, 4)],
                      "shifts": [s.name for s in SHIFTS if s.target]},
        "shifts": per_shift, "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"false alarms: {false_alarms['rate']:.1%} of {args.trials} in-distribution samples "
          f"(95 % CI {false_alarms['ci95'][0]:.1%}-{false_alarms['ci95'][1]:.1%}; columns: "
          f"{false_alarms['columns'] or 'none'}); raw K-S p < {compare.drift_significance} on "
          f"any column would alarm on {false_alarms['raw_ks_rate']:.1%}")
    for name, r in per_shift.items():
        note = "" if r["target"] else " (sensitivity, not a target)"
        top = ", ".join(f"{c} {n}" for c, n in list(r["columns"].items())[:4])
        print(f"  {name:18} {r['rate']:7.1%}  {r['description']}{note}; drifted: {top}")
    print(f"detection: {result['detection']['rate']:.1%} of {total} shifted samples "
          f"(95 % CI {low:.1%}-{high:.1%}); "
          f"{result['seconds']} s; written to {args.out}")


if __name__ == "__main__":
    main()
