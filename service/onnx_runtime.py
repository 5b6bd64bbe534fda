"""ONNX Runtime backend for a fine-tuned transformer: fp32 or INT8 graphs, scored without torch.

`make bento` prepares the INT8 graph (the one `accel: auto` picks on VNNI CPUs) inside the
Bento's model (`onnx/`), so such a worker starts without importing torch or transformers
(seconds of a cold start). Graphs not prepared there (the fp32 one, or any graph for
models/candidate during development) are exported on first use into MODERATION_ONNX_CACHE.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.runtime.classifier import TransformerClassifier, load_tfidf
from pipelines.runtime.metadata import ModelMetadata

PREPARED_DIR = "onnx"
GRAPH_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
# Graph input name -> the field of a `tokenizers` Encoding that feeds it.
ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask",
                   "token_type_ids": "type_ids"}


def onnx_cache_dir() -> Path:
    """Where graphs exported at start go; /tmp by default because the container's only writable
    path."""
    return Path(os.environ.get("MODERATION_ONNX_CACHE",
                               Path(tempfile.gettempdir()) / "moderation-onnx"))


def prepared_graph(model_dir: Path, accel: str) -> Path | None:
    """The graph `make bento` prepared for this path inside the model directory, if any."""
    path = Path(model_dir) / PREPARED_DIR / GRAPH_FILES[accel]
    return path if path.is_file() else None


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


def quantize_onnx(fp32: Path, int8: Path) -> None:
    """INT8 weights, activations quantised per batch at run time (VNNI/AMX kernels on x86).

    Per-channel weight scales: on the default model per-tensor ones moved holdout macro-F1 by
    0.012 from fp32, past the 0.005 the speed-ups are allowed; per-channel by 0.0045.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = int8.with_suffix(".partial")
    quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    tmp.replace(int8)


def export_graphs(model_dir: Path, out_dir: Path, metadata: ModelMetadata) -> dict[str, Path]:
    """Export the fp32 graph of a saved transformer (metadata: its own) and its INT8 version
    into out_dir."""
    clf = TransformerClassifier.load(Path(model_dir), metadata)
    paths = {accel: Path(out_dir) / name for accel, name in GRAPH_FILES.items()}
    export_onnx(clf, paths["onnx"])
    quantize_onnx(paths["onnx"], paths["onnx-int8"])
    return paths


def prepare_onnx(model_dir: Path, metadata: ModelMetadata) -> Path:
    """The INT8 graph into the model directory's onnx/ (`make bento`, on the Bento's copy). The
    fp32 graph (91 MB for MiniLM-L6) stays out of the image: only an explicit `onnx` uses it."""
    with tempfile.TemporaryDirectory() as work:
        graphs = export_graphs(model_dir, Path(work), metadata)
        prepared = Path(model_dir) / PREPARED_DIR / GRAPH_FILES["onnx-int8"]
        prepared.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(graphs["onnx-int8"], prepared)
    return prepared


def fast_tokenizer(model_dir: Path, max_length: int):
    """The saved tokenizer through the `tokenizers` library alone: the encodings the model was
    trained on (same tokenizer.json), truncated and padded as the transformers call does, without
    importing transformers."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    config = json.loads((Path(model_dir) / "tokenizer_config.json").read_text(encoding="utf-8"))
    pad_token = config.get("pad_token") or "[PAD]"
    if isinstance(pad_token, dict):
        pad_token = pad_token["content"]
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad_token), pad_token=pad_token)
    return tokenizer


class OnnxClassifier(TransformerClassifier):
    """The transformer's forward pass in an ONNX Runtime session; blend and threshold as ever."""

    def __init__(self, session: Any, tokenizer: Any, metadata: ModelMetadata,
                 batch_size: int = 64, tfidf: Any = None):
        super().__init__(None, tokenizer, metadata, batch_size, tfidf)
        self.session = session
        self.inputs = [i.name for i in session.get_inputs()]

    def batch_logits(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        feed = {name: np.array([getattr(e, ENCODING_FIELDS[name]) for e in encodings],
                               dtype=np.int64) for name in self.inputs}
        return self.session.run(None, feed)[0]


def graph_for(model_dir: Path, accel: str, metadata: ModelMetadata) -> Path:
    """The prepared graph, else one exported now into the cache (once per model version)."""
    prepared = prepared_graph(model_dir, accel)
    if prepared is not None:
        return prepared
    cached = onnx_cache_dir() / metadata.version / GRAPH_FILES[accel]
    if not cached.is_file():
        export_graphs(model_dir, cached.parent, metadata)
    return cached


def load_onnx_classifier(model_dir: Path, metadata: ModelMetadata, accel: str,
                         threads: int | None = None, batch_size: int = 64) -> OnnxClassifier:
    """A transformer model directory (metadata: its own) scored by ONNX Runtime (`accel` onnx
    or onnx-int8)."""
    import onnxruntime as ort

    model_dir = Path(model_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    session = ort.InferenceSession(str(graph_for(model_dir, accel, metadata)),
                                   options, providers=["CPUExecutionProvider"])
    tokenizer = fast_tokenizer(model_dir, int(metadata.params["max_length"]))
    return OnnxClassifier(session, tokenizer, metadata, batch_size,
                          load_tfidf(model_dir, metadata))
