"""A model's scores on the frozen holdout: overall, per slice and behavioural (what evaluate
writes as DVC metrics and compare computes for both models)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.analysis.behaviour import run_behaviour_checks
from pipelines.analysis.metrics import classification_metrics, slice_masks, slice_metrics
from pipelines.core.data import read_split
from pipelines.runtime.classifier import Classifier
from pipelines.runtime.params import DataParams, EvaluateParams


def load_holdout(data: DataParams) -> tuple[pd.DataFrame, np.ndarray]:
    """The holdout frame and its labels as class ids (unknown labels were stopped by validate)."""
    frame = read_split(data.holdout_file, data.max_holdout_rows)
    labels = list(data.labels)
    return frame, np.array([labels.index(label) for label in frame.label])


def score_model(classifier: Classifier, frame: pd.DataFrame, y_true: np.ndarray,
                labels: list[str], evaluate: EvaluateParams, proba: np.ndarray | None = None
                ) -> dict:
    """Every holdout metric of one model (labels: the class ids' names): overall, per slice
    and behavioural."""
    texts = list(frame.text)
    proba = classifier.predict_proba(texts) if proba is None else proba
    result = classification_metrics(y_true, proba, labels)
    result["model_version"] = classifier.version
    result["slices"] = slice_metrics(y_true, proba, labels,
                                     slice_masks(texts, evaluate.slices))
    result["behaviour"] = run_behaviour_checks(classifier, texts, y_true, proba,
                                               evaluate.behaviour)
    return result
