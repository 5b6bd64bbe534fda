"""ONNX Runtime backend for a fine-tuned transformer: export once, then score with ORT."""

from __future__ import annotations

import inspect
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from pipelines.core.classifier import TransformerClassifier


def onnx_cache_dir() -> Path:
    """Where exported graphs go; /tmp by default because the container's only writable path."""
    return Path(os.environ.get("MODERATION_ONNX_CACHE",
                               Path(tempfile.gettempdir()) / "moderation-onnx"))


def export_onnx(clf: TransformerClassifier, path: Path) -> list[str]:
    """Export the model with dynamic batch and sequence axes; returns the graph's input names."""
    import torch

    sample = clf.tokenizer(["a short sample", "another"], padding=True, return_tensors="pt")
    # Positional export: inputs must follow the forward() signature order.
    names = [n for n in inspect.signature(clf.model.forward).parameters if n in sample]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(clf.model, tuple(sample[n] for n in names), str(tmp),
                          input_names=names, output_names=["logits"], opset_version=17,
                          dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names},
                                        "logits": {0: "batch"}}, dynamo=False)
    tmp.replace(path)  # never leave a half-written graph for the next start
    return names


def use_onnx_runtime(clf: TransformerClassifier, model_dir: Path) -> None:
    """Swap the classifier's forward pass for an ONNX Runtime session (same tokenizer)."""
    import onnxruntime as ort
    import torch

    path = onnx_cache_dir() / clf.version / "model.onnx"
    if not path.exists():
        export_onnx(clf, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]

    def forward_proba(texts: list[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), len(clf.labels)), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), clf.batch_size):
            idx = order[start : start + clf.batch_size]
            enc = clf.tokenizer([texts[i] for i in idx], truncation=True, padding=True,
                                max_length=clf.max_length, return_tensors="np")
            logits = session.run(None, {n: enc[n].astype(np.int64) for n in inputs})[0]
            logits = logits - logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            out[idx] = probs / probs.sum(axis=1, keepdims=True)
        return out

    clf.forward_proba = forward_proba  # type: ignore[method-assign]
    del clf.model  # the torch weights are no longer needed
