"""Evidently 0.7 reports of a comparison: holdout quality (candidate vs production) and
training-data drift (candidate's data vs production's), with offline text descriptors only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import pipelines.stages.evidently_compat  # noqa: F401  (must run before evidently is imported)

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
)
from evidently.presets import ClassificationQuality, DataDriftPreset
from evidently.tests import Reference, gte

_WORD = re.compile(r"[A-Za-z']+")
DESCRIPTORS = ["length", "words", "sentences", "non_letter_share", "mentions", "uppercase_share"]
# Rows with distances at or above the threshold drifted; p-value methods drift below it.
_P_VALUE_METHODS = ("p_value", "K-S", "chi-square", "Z-test", "Fisher", "T-Test", "Anderson")


def _numeric(values: list[float]) -> DatasetColumn:
    return DatasetColumn(ColumnType.Numerical, pd.Series(values, dtype=float))


def mention_count(column: DatasetColumn) -> DatasetColumn:
    """How many @mentions a text has."""
    return _numeric([t.count("@") for t in column.data.astype(str)])


def uppercase_share(column: DatasetColumn) -> DatasetColumn:
    """Share of letters that are upper case (shouting)."""
    out = []
    for text in column.data.astype(str):
        letters = [c for c in text if c.isalpha()]
        out.append(sum(c.isupper() for c in letters) / len(letters) if letters else 0.0)
    return _numeric(out)


def unseen_word_share_against(vocabulary: set[str]):
    """A descriptor function: share of a text's words never seen in the reference data (topic)."""
    def unseen_word_share(column: DatasetColumn) -> DatasetColumn:
        out = []
        for text in column.data.astype(str):
            words = [w.lower() for w in _WORD.findall(text)]
            out.append(sum(w not in vocabulary for w in words) / len(words) if words else 0.0)
        return _numeric(out)
    return unseen_word_share


def _descriptors(vocabulary: set[str]) -> list:
    return [
        TextLength("text", alias="length"),
        WordCount("text", alias="words"),
        SentenceCount("text", alias="sentences"),
        NonLetterCharacterPercentage("text", alias="non_letter_share"),
        CustomColumnDescriptor("text", mention_count, alias="mentions"),
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


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    frame = frame[["text", "label"]]
    return frame.sample(rows, random_state=seed) if len(frame) > rows else frame


def _drifted(method: str, value: float, threshold: float) -> bool:
    if any(m.lower() in method.lower() for m in _P_VALUE_METHODS):
        return value < threshold
    return value >= threshold


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, rows: int, seed: int,
                 out_dir: Path) -> dict[str, Any]:
    """Drift of label and text descriptors from production's training data to the candidate's."""
    reference, current = _sample(reference, rows, seed), _sample(current, rows, seed)
    vocabulary = {w.lower() for t in reference.text for w in _WORD.findall(t)}
    definition = DataDefinition(text_columns=["text"], categorical_columns=["label"])
    descriptors = _descriptors(vocabulary)
    columns = [*DESCRIPTORS, "unseen_word_share", "label"]
    ref = Dataset.from_pandas(reference, data_definition=definition, descriptors=descriptors)
    cur = Dataset.from_pandas(current, data_definition=definition, descriptors=descriptors)
    snapshot = Report([DataDriftPreset(columns=columns)]).run(cur, ref)
    snapshot.save_html(str(out_dir / "drift.html"))
    snapshot.save_json(str(out_dir / "drift.json"))
    per_column = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            value = float(metric["value"])
            per_column[config["column"]] = {
                "method": config["method"], "value": round(value, 4),
                "threshold": config["threshold"],
                "drifted": _drifted(config["method"], value, config["threshold"]),
                "reference_mean": _mean(ref, config["column"]),
                "current_mean": _mean(cur, config["column"])}
    drifted = [c for c, d in per_column.items() if d["drifted"]]
    return {"html": str(out_dir / "drift.html"), "json": str(out_dir / "drift.json"),
            "rows": {"reference": len(reference), "current": len(current)},
            "columns": per_column, "drifted": drifted, "flagged": bool(drifted)}


def _mean(dataset: Dataset, column: str) -> float | None:
    values = dataset.as_dataframe()[column]
    return round(float(values.mean()), 4) if pd.api.types.is_numeric_dtype(values) else None
