"""Load any model this pipeline saves and score texts with it: the one inference function."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipelines.runtime.canonical import canonical_texts
from pipelines.runtime.metadata import ModelMetadata


class Classifier(Protocol):
    labels: list[str]
    version: str
    metadata: ModelMetadata
    canonical: bool

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), len(labels)), rows summing to 1."""


def model_input(classifier: Classifier, texts: list[str]) -> list[str]:
    """The texts as every model is trained on and scores them: canonicalised (runtime/canonical.py),
    unless `classifier.canonical` was switched off to measure what canonicalising buys."""
    return canonical_texts(texts) if classifier.canonical else list(texts)


class BaselineClassifier:
    """TF-IDF + logistic regression, saved with joblib."""

    def __init__(self, model_dir: Path, metadata: ModelMetadata):
        import joblib

        self.metadata = metadata
        self.labels = metadata.labels
        self.version = metadata.version
        self.pipeline = joblib.load(model_dir / "model.joblib")
        self.canonical = True

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.pipeline.predict_proba(model_input(self, texts)).astype(np.float32)


TFIDF_FILE = "tfidf.joblib"  # the TF-IDF model a transformer is blended with, if it is


def blend(transformer: np.ndarray, tfidf: np.ndarray | None, tfidf_weight: float) -> np.ndarray:
    """Weighted mean of the two models' class probabilities (the transformer's alone at 0)."""
    if tfidf is None or not tfidf_weight:
        return transformer
    return ((1 - tfidf_weight) * transformer + tfidf_weight * tfidf).astype(np.float32)


def apply_threshold(proba: np.ndarray, threshold: float | None) -> np.ndarray:
    """Two labels: move the positive score so that it reaches 0.5 exactly where it reached
    `threshold`, so argmax applies the tuned cut. A shift in log-odds keeps the order of the
    scores (ROC AUC, PR curves) unchanged."""
    if threshold is None or threshold == 0.5 or proba.shape[1] != 2 or not len(proba):
        return proba
    positive = np.clip(proba[:, 1].astype(np.float64), 1e-7, 1 - 1e-7)
    log_odds = np.log(positive / (1 - positive)) - np.log(threshold / (1 - threshold))
    shifted = 1 / (1 + np.exp(-log_odds))
    return np.stack([1 - shifted, shifted], axis=1).astype(np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def load_tfidf(model_dir: Path, metadata: ModelMetadata) -> Any:
    """The TF-IDF side of a blended transformer, or None when the decision does not blend."""
    if metadata.decision is None or not metadata.decision.tfidf_weight:
        return None
    import joblib

    return joblib.load(model_dir / TFIDF_FILE)


class TransformerClassifier:
    """A fine-tuned transformers sequence classifier with its tokenizer, optionally blended
    with a TF-IDF model and a tuned decision threshold (metadata `decision`, set by train)."""

    def __init__(self, model: Any, tokenizer: Any, metadata: ModelMetadata,
                 batch_size: int = 64, tfidf: Any = None):
        self.model, self.tokenizer, self.tfidf = model, tokenizer, tfidf
        self.metadata = metadata
        self.labels = metadata.labels
        self.version = metadata.version
        self.max_length = int(metadata.params["max_length"])
        decision = metadata.decision
        self.tfidf_weight = decision.tfidf_weight if decision else 0.0
        self.threshold = decision.threshold if decision else None
        self.batch_size = batch_size
        self.canonical = True
        # Set by the service's bf16 path: run the forward under CPU autocast in this dtype.
        self.autocast_dtype: Any = None

    @classmethod
    def load(cls, model_dir: Path, metadata: ModelMetadata,
             batch_size: int = 64) -> TransformerClassifier:
        # Lazy: torch and transformers take seconds to import, and a baseline needs neither.
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        return cls(model, tokenizer, metadata, batch_size, load_tfidf(model_dir, metadata))

    def forward_proba(self, texts: list[str]) -> np.ndarray:
        """The transformer's own class probabilities, batch by batch, of texts as given
        (predict_proba canonicalises them first)."""
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        # Sorting by length keeps padding, and so wasted compute, small within each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = softmax(self.batch_logits([texts[i] for i in idx]))
        return out

    def batch_logits(self, texts: list[str]) -> np.ndarray:
        """One forward pass in torch (what the ONNX Runtime backend replaces)."""
        import torch

        enc = self.tokenizer(texts, truncation=True, padding=True, max_length=self.max_length,
                             return_tensors="pt")
        autocast = torch.autocast("cpu", dtype=self.autocast_dtype,
                                  enabled=self.autocast_dtype is not None)
        with torch.inference_mode(), autocast:
            logits = self.model(**enc.to(getattr(self.model, "device", "cpu"))).logits
        return logits.float().cpu().numpy()

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        texts = model_input(self, texts)
        proba = self.forward_proba(texts)
        if self.tfidf is not None and texts:
            proba = blend(proba, self.tfidf.predict_proba(texts), self.tfidf_weight)
        return apply_threshold(proba, self.threshold)


def load_classifier(model_dir: Path | str, batch_size: int = 64,
                    metadata: ModelMetadata | None = None) -> Classifier:
    """Load a model directory written by `train` or `train-baseline`, whatever its kind
    (batch_size: texts per forward pass of a transformer; the baseline scores all at once;
    metadata: the directory's, where the caller has read it already)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model_dir = Path(model_dir)
    metadata = metadata or ModelMetadata.load(model_dir)
    if metadata.kind == "transformer":
        return TransformerClassifier.load(model_dir, metadata, batch_size)
    return BaselineClassifier(model_dir, metadata)


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
