"""The one inference function the service wraps, plus the CPU fast paths (bf16, INT8, ONNX)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, get_args

from pipelines.runtime.classifier import Classifier, TransformerClassifier, load_classifier, predict
from pipelines.runtime.cpu import BF16_MATRIX_FLAGS, BF16_VECTOR_FLAGS, INT8_FLAGS, cpu_flags
from pipelines.runtime.metadata import ModelMetadata
from pipelines.runtime.params import ServeParams
from service.onnx_runtime import GRAPH_FILES, load_onnx_classifier, prepared_graph

logger = logging.getLogger(__name__)

# none = fp32; auto = the fastest path this CPU's flags support (see choose_accel); onnx and
# onnx-int8 run in ONNX Runtime, without importing torch where the Bento prepared the graph.
ACCELERATIONS = get_args(ServeParams.model_fields["accel"].annotation)
ONNX_ACCELERATIONS = tuple(GRAPH_FILES)


def choose_accel(flags: set[str]) -> tuple[str, str]:
    """(path, why) for `accel: auto`, ranked by texts/s measured on each kind of CPU.

    AMX tiles make bf16 the fastest where present; without them INT8 on VNNI beats bf16 on the
    AVX-512 vector units at the small batches a server sees; with neither, fp32.
    """
    has = sorted(flags & {*BF16_MATRIX_FLAGS, *BF16_VECTOR_FLAGS, *INT8_FLAGS})
    if flags & set(BF16_MATRIX_FLAGS):
        return "bf16", f"CPU has AMX ({', '.join(has)})"
    if flags & set(INT8_FLAGS):
        return "int8", f"CPU has VNNI but no AMX ({', '.join(has)})"
    if flags & set(BF16_VECTOR_FLAGS):
        return "bf16", f"CPU has {', '.join(has)}"
    return "none", "CPU has no bf16 or int8 matrix instructions; fp32"


def resolve_accel(accel: str, flags: set[str] | None = None,
                  model_dir: Path | str | None = None) -> str:
    """The concrete path for a configured `accel`, logging what `auto` chose and why.

    INT8 runs in ONNX Runtime where the model directory holds the graph `make bento` prepared
    (as fast as torch's INT8 kernels here, and the worker never imports torch); else in torch.
    """
    if accel not in ACCELERATIONS:
        raise ValueError(f"accel must be one of {ACCELERATIONS}, got {accel!r}")
    if accel != "auto":
        return accel
    chosen, why = choose_accel(cpu_flags() if flags is None else flags)
    if chosen == "int8" and model_dir is not None and prepared_graph(Path(model_dir),
                                                                     "onnx-int8"):
        chosen, why = "onnx-int8", why + "; the model has a prepared ONNX INT8 graph"
    logger.info("accel auto: %s -> %s", why, "fp32" if chosen == "none" else chosen)
    return chosen


def use_bf16(clf: TransformerClassifier) -> None:
    """Linear layers in bf16 under CPU autocast; LayerNorm, softmax and embeddings stay fp32.

    Casting the weights once up front spares autocast re-casting them on every forward pass.
    """
    import torch

    for module in clf.model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)
    clf.autocast_dtype = torch.bfloat16


def quantize_int8(clf: TransformerClassifier) -> None:
    """Replace the Linear layers with dynamically quantised INT8 ones (VNNI kernels on x86)."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch flags the eager quantisation API as deprecated
        clf.model = quantize_dynamic(clf.model, {torch.nn.Linear}, dtype=torch.qint8)


def load_model(model_dir: Path | str, accel: str = "none", threads: int | None = None,
               batch_size: int = 64) -> Classifier:
    """Load a saved model and apply the configured CPU fast path (transformers only)."""
    accel = resolve_accel(accel, model_dir=model_dir)
    metadata = ModelMetadata.load(model_dir)  # read once, passed to whichever loader runs
    if accel in ONNX_ACCELERATIONS and metadata.kind == "transformer":
        return load_onnx_classifier(Path(model_dir), metadata, accel, threads, batch_size)
    if threads and metadata.kind == "transformer":
        import torch  # the TF-IDF model never needs it (the image has no torch)

        torch.set_num_threads(threads)
    clf = load_classifier(model_dir, batch_size, metadata)
    if accel == "bf16" and isinstance(clf, TransformerClassifier):
        use_bf16(clf)
    elif accel == "int8" and isinstance(clf, TransformerClassifier):
        quantize_int8(clf)
    return clf


def classify(clf: Classifier, texts: list[str]) -> list[dict[str, Any]]:
    """Label, per-class scores and model version for each text: what /classify returns."""
    return [{**p, "model_version": clf.version} for p in predict(clf, texts)]
