"""Load any model this pipeline saves and score texts with it: the one inference function."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipelines.core.metadata import read_metadata


class Classifier(Protocol):
    labels: list[str]
    version: str
    metadata: dict[str, Any]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), len(labels)), rows summing to 1."""


class BaselineClassifier:
    """TF-IDF + logistic regression, saved with joblib."""

    def __init__(self, model_dir: Path, metadata: dict[str, Any]):
        import joblib

        self.metadata = metadata
        self.labels = metadata["labels"]
        self.version = metadata["version"]
        self.pipeline = joblib.load(model_dir / "model.joblib")

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.pipeline.predict_proba(list(texts)).astype(np.float32)


class TransformerClassifier:
    """A fine-tuned transformers sequence classifier with its tokenizer."""

    def __init__(self, model_dir: Path, metadata: dict[str, Any], batch_size: int = 64):
        # Lazy: torch and transformers take seconds to import, and a baseline needs neither.
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.metadata = metadata
        self.labels = metadata["labels"]
        self.version = metadata["version"]
        self.max_length = int(metadata["params"]["max_length"])
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        self.model.eval()
        self.torch = torch
        # Set by the service's bf16 path: run the forward under CPU autocast in this dtype.
        self.autocast_dtype: Any = None

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        # Sorting by length keeps padding, and so wasted compute, small within each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        autocast = self.torch.autocast("cpu", dtype=self.autocast_dtype,
                                       enabled=self.autocast_dtype is not None)
        with self.torch.inference_mode(), autocast:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], truncation=True, padding=True,
                                     max_length=self.max_length, return_tensors="pt")
                logits = self.model(**enc).logits.float()
                out[idx] = self.torch.softmax(logits, dim=-1).numpy()
        return out


def load_classifier(model_dir: Path | str, batch_size: int = 64) -> Classifier:
    """Load a model directory written by `train` or `train-baseline`, whatever its kind
    (batch_size: texts per forward pass of a transformer; the baseline scores all at once)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    kind = metadata.get("kind")
    if kind == "transformer":
        return TransformerClassifier(model_dir, metadata, batch_size)
    if kind == "baseline":
        return BaselineClassifier(model_dir, metadata)
    raise ValueError(f"{model_dir}: unknown model kind {kind!r}")


def predict(classifier: Classifier, texts: list[str]) -> list[dict[str, Any]]:
    """Label and per-class scores for each text."""
    proba = classifier.predict_proba(texts)
    return [
        {
            "label": classifier.labels[int(row.argmax())],
            "scores": {label: float(p) for label, p in zip(classifier.labels, row, strict=True)},
        }
        for row in proba
    ]
