"""Evidently 0.7 reports: holdout quality (candidate vs production), and drift of text
descriptors, labels and scores (the comparison's training data, the drift check's traffic), with
offline text descriptors only. Which shift counts as drift is decided in drift_measures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import pipelines.analysis.evidently_compat  # noqa: F401  (must run before evidently is imported)

# isort: split
from evidently import BinaryClassification, DataDefinition, Dataset, Report
from evidently.core.datasets import DatasetColumn
from evidently.descriptors import (
    CustomColumnDescriptor,
    NonLetterCharacterPercentage,
    SentenceCount,
    TextLength,
    WordCount,
)
from evidently.legacy.core import ColumnType
from evidently.metrics import (
    Accuracy,
    F1ByLabel,
    F1Score,
    Precision,
    PrecisionByLabel,
    Recall,
    RecallByLabel,
    RocAuc,
    ValueDrift,
)
from evidently.presets import ClassificationQuality
from evidently.tests import Reference, gte

from pipelines.analysis.drift_measures import METHOD, HeldOutVocabulary, judge_columns
from pipelines.analysis.metrics import slice_masks
from pipelines.runtime.params import CompareParams

DESCRIPTORS = ["length", "words", "sentences", "non_letter_share", "uppercase_share",
               "unseen_word_share"]


def _numeric(values: list[float]) -> DatasetColumn:
    return DatasetColumn(ColumnType.Numerical, pd.Series(values, dtype=float))


def uppercase_share(column: DatasetColumn) -> DatasetColumn:
    """Share of letters that are upper case (shouting)."""
    out = []
    for text in column.data.astype(str):
        letters = [c for c in text if c.isalpha()]
        out.append(sum(c.isupper() for c in letters) / len(letters) if letters else 0.0)
    return _numeric(out)


def unseen_word_share_against(vocabulary: HeldOutVocabulary):
    """A descriptor function: share of a text's words that production's training data (the half
    that did not include the text) never used: a new topic or language."""
    def unseen_word_share(column: DatasetColumn) -> DatasetColumn:
        return _numeric([vocabulary.unseen_share(text) for text in column.data.astype(str)])
    return unseen_word_share


def _descriptors(vocabulary: HeldOutVocabulary) -> list:
    return [
        TextLength("text", alias="length"),
        WordCount("text", alias="words"),
        SentenceCount("text", alias="sentences"),
        NonLetterCharacterPercentage("text", alias="non_letter_share"),
        CustomColumnDescriptor("text", uppercase_share, alias="uppercase_share"),
        CustomColumnDescriptor("text", unseen_word_share_against(vocabulary),
                               alias="unseen_word_share"),
    ]


def quality_report(y_true: list[str], production: dict[str, np.ndarray],
                   candidate: dict[str, np.ndarray], positive: str, margin: float,
                   out_dir: Path) -> dict[str, Any]:
    """Candidate (current) vs production (reference) on the holdout, with non-inferiority tests."""
    definition = DataDefinition(
        classification=[BinaryClassification(target="target", prediction_labels="prediction",
                                             prediction_probas="score", pos_label=positive)],
        categorical_columns=["target", "prediction"], numerical_columns=["score"])

    def dataset(model: dict[str, np.ndarray]) -> Dataset:
        frame = pd.DataFrame({"target": y_true, "prediction": model["labels"],
                              "score": model["score"].astype(float)})
        return Dataset.from_pandas(frame, data_definition=definition)

    no_worse = [gte(Reference(absolute=margin))]
    report = Report([F1Score(tests=no_worse), Accuracy(tests=no_worse), Precision(),
                     Recall(), RocAuc(tests=no_worse),
                     # Plots only: the gate's tests are the non-inferiority ones above.
                     ClassificationQuality(conf_matrix=True, pr_curve=True, pr_table=True,
                                           include_tests=False),
                     F1ByLabel(), PrecisionByLabel(), RecallByLabel()])
    snapshot = report.run(dataset(candidate), dataset(production))
    snapshot.save_html(str(out_dir / "quality.html"))
    snapshot.save_json(str(out_dir / "quality.json"))
    # evidently's own test titles repeat the reference; the metric name and description suffice.
    tests = [{"name": t["name"].split(":")[0], "description": t["description"],
              "status": getattr(t["status"], "value", str(t["status"]))}
             for t in snapshot.dict()["tests"]]
    return {"html": str(out_dir / "quality.html"), "json": str(out_dir / "quality.json"),
            "tests": tests, "failed": [t["name"] for t in tests if t["status"] != "SUCCESS"]}


def text_columns(slices: Mapping[str, str]) -> list[str]:
    """The descriptors, then one `<slice>_share` column per evaluation slice."""
    return [*DESCRIPTORS, *(f"{name}_share" for name in slices)]


def describe_texts(texts: Iterable[str], vocabulary: HeldOutVocabulary,
                   slices: Mapping[str, str]) -> pd.DataFrame:
    """One row per text: its descriptors, and 1/0 per evaluation slice it falls in or not (the
    slices are where the model is known to be weak; their means are the slices' shares)."""
    texts = [str(t) for t in texts]
    frame = pd.DataFrame({"text": texts})
    dataset = Dataset.from_pandas(frame, data_definition=DataDefinition(text_columns=["text"]),
                                  descriptors=_descriptors(vocabulary))
    described = dataset.as_dataframe()[DESCRIPTORS].astype(float).reset_index(drop=True)
    for name, mask in slice_masks(texts, dict(slices)).items():
        described[f"{name}_share"] = mask.astype(float)
    return described


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, min_effect: Mapping[str, float],
                 significance: float, out_dir: Path, name: str = "drift") -> dict[str, Any]:
    """Evidently report (<name>.html/.json) of numeric columns and the drift verdict per column.

    The HTML shows Evidently's normed Wasserstein distances against the same thresholds; the
    verdict also asks the K-S test to rule out noise (drift_measures.judge_columns).
    """
    columns = list(min_effect)
    definition = DataDefinition(numerical_columns=columns)
    snapshot = Report([ValueDrift(column=c, method=METHOD, threshold=t)
                       for c, t in min_effect.items()]).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition))
    html, json_path = out_dir / f"{name}.html", out_dir / f"{name}.json"
    snapshot.save_html(str(html))
    snapshot.save_json(str(json_path))
    verdicts = judge_columns(reference, current, min_effect, significance)
    per_column = {c: {"method": "normed Wasserstein", "value": round(v["effect"], 4),
                      "threshold": v["threshold"], "p_value": float(f"{v['p_value']:.3g}"),
                      "drifted": v["drifted"],
                      "reference_mean": round(float(reference[c].mean()), 4),
                      "current_mean": round(float(current[c].mean()), 4)}
                  for c, v in verdicts.items()}
    drifted = [c for c, d in per_column.items() if d["drifted"]]
    return {"html": str(html), "json": str(json_path),
            "rows": {"reference": len(reference), "current": len(current)},
            "significance": significance, "columns": per_column, "drifted": drifted,
            "flagged": bool(drifted)}


def text_thresholds(compare: CompareParams, slices: Mapping[str, str]) -> dict[str, float]:
    """The minimum effect of every text column."""
    return dict.fromkeys(text_columns(slices), compare.drift_min_effect)


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame.sample(rows, random_state=seed) if len(frame) > rows else frame


def training_drift(reference: pd.DataFrame, current: pd.DataFrame, positive: str,
                   compare: CompareParams, slices: Mapping[str, str], out_dir: Path
                   ) -> dict[str, Any]:
    """Drift of the candidate's training data (current) from production's (reference): text
    descriptors and `label` (the share of the positive label)."""
    vocabulary = HeldOutVocabulary(reference.text)

    def columns(frame: pd.DataFrame) -> pd.DataFrame:
        frame = _sample(frame, compare.drift_sample_rows, compare.seed)
        described = describe_texts(frame.text, vocabulary, slices)
        described["label"] = (frame.label == positive).to_numpy(dtype=float)
        return described

    thresholds = text_thresholds(compare, slices) | {"label": compare.drift_min_label_effect}
    return drift_report(columns(reference), columns(current), thresholds,
                        compare.drift_significance, out_dir)
