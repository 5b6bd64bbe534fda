"""The train stage's model-selection helpers: dev split, precision, decision threshold."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.stages import train as train_stage


def test_dev_split_is_disjoint_covers_every_row_and_keeps_each_class_share():
    labels = [0] * 700 + [1] * 300
    rows, dev = train_stage.dev_split(labels, 0.1, seed=1)
    assert set(rows).isdisjoint(dev) and len(rows) + len(dev) == len(labels)
    assert np.bincount(np.asarray(labels)[dev]).tolist() == [70, 30]


def test_dev_split_is_seeded_and_empty_at_fraction_zero():
    labels = [0, 1] * 50
    assert np.array_equal(train_stage.dev_split(labels, 0.2, 7)[1],
                          train_stage.dev_split(labels, 0.2, 7)[1])
    assert len(train_stage.dev_split(labels, 0.0, 7)[1]) == 0


@pytest.mark.parametrize(("precision", "has_bf16", "expected"), [
    ("fp32", True, False), ("bf16", False, True), ("auto", True, True), ("auto", False, False),
])
def test_precision_auto_follows_the_cpu_amx_bf16_units(monkeypatch, precision, has_bf16, expected):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train_stage, "cpu_has_amx_bf16", lambda: has_bf16)
    assert train_stage.use_bf16(precision) is expected


def test_threshold_is_the_cut_that_maximises_dev_macro_f1():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.5, 0.6, 0.7, 0.8, 0.9])  # at 0.5 two negatives are called positive
    assert 0.6 < train_stage.best_threshold(y, p, 2) <= 0.7


def test_threshold_stays_at_one_half_without_evidence_for_another():
    y = np.array([0, 1])
    assert train_stage.best_threshold(y, np.array([0.01, 0.99]), 2) == 0.5


def test_shifted_bias_makes_argmax_apply_the_threshold():
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, num_labels=2)).eval()
    ids = torch.randint(0, 50, (64, 6))
    with torch.no_grad():
        before = torch.softmax(model(input_ids=ids).logits, -1)[:, 1].numpy()
        threshold = float(np.median(before))
        train_stage.shift_decision(model, threshold)
        after = model(input_ids=ids).logits.argmax(-1).numpy()
    assert np.array_equal(after == 1, before >= threshold)
