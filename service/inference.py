"""The one inference function the service wraps, plus the optional CPU speed-ups."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from pipelines.core.classifier import Classifier, TransformerClassifier, load_classifier, predict

ACCELERATIONS = ("none", "int8", "onnx")


def quantize_int8(clf: TransformerClassifier) -> None:
    """Replace the Linear layers with dynamically quantised INT8 ones (weights int8, fp32 act.)."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch flags the eager quantisation API as deprecated
        clf.model = quantize_dynamic(clf.model, {torch.nn.Linear}, dtype=torch.qint8)


def load_model(model_dir: Path | str, accel: str = "none", threads: int | None = None,
               **kwargs: Any) -> Classifier:
    """Load a saved model and apply the configured CPU speed-up (transformers only)."""
    if accel not in ACCELERATIONS:
        raise ValueError(f"accel must be one of {ACCELERATIONS}, got {accel!r}")
    if threads:
        import torch

        torch.set_num_threads(threads)
    clf = load_classifier(model_dir, **kwargs)
    if accel == "none" or not isinstance(clf, TransformerClassifier):
        return clf
    if accel == "int8":
        quantize_int8(clf)
    else:
        from service.onnx_runtime import use_onnx_runtime

        use_onnx_runtime(clf, Path(model_dir))
    return clf


def classify(clf: Classifier, texts: list[str]) -> list[dict[str, Any]]:
    """Label, per-class scores and model version for each text: what /classify returns."""
    return [{**p, "model_version": clf.version} for p in predict(clf, texts)]
