"""The train stage's model-selection helpers: dev split, decision threshold."""

from __future__ import annotations

import numpy as np

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


def test_threshold_is_the_cut_that_maximises_dev_macro_f1():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.5, 0.6, 0.7, 0.8, 0.9])  # at 0.5 two negatives are called positive
    assert 0.6 < train_stage.best_threshold(y, p, 2) <= 0.7


def test_threshold_stays_at_one_half_without_evidence_for_another():
    y = np.array([0, 1])
    assert train_stage.best_threshold(y, np.array([0.01, 0.99]), 2) == 0.5


def test_cpu_has_bf16_on_amx_or_avx512_bf16_only():
    from pipelines.runtime.cpu import cpu_has_bf16

    assert cpu_has_bf16({"amx_bf16", "amx_tile"}) and cpu_has_bf16({"avx512_bf16"})
    assert not cpu_has_bf16({"avx512_vnni", "avx2"})


def _scores(positive: np.ndarray) -> np.ndarray:
    return np.stack([1 - positive, positive], axis=1)


def test_decision_blends_in_tfidf_when_it_fixes_what_the_transformer_misses():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    # The transformer is right on the first half only, the TF-IDF model on the second half only.
    half = np.arange(400) < 200
    transformer = _scores(np.where(half, 0.2 + 0.6 * y, 0.5 + 0.05 * rng.standard_normal(400)))
    tfidf = _scores(np.where(half, 0.5, 0.3 + 0.4 * y))
    weight, threshold, score = train_stage.choose_decision(y, transformer, tfidf, True, 2)
    alone = train_stage.choose_decision(y, transformer, None, True, 2)
    assert weight > 0 and score > alone[2] and alone[0] == 0.0
    assert threshold is not None


def test_decision_keeps_the_transformer_alone_when_tfidf_adds_nothing():
    y = np.array([0, 1] * 100)
    transformer = _scores(np.where(y == 1, 0.9, 0.1))  # already perfect
    tfidf = _scores(np.full(200, 0.5))
    assert train_stage.choose_decision(y, transformer, tfidf, True, 2)[:2] == (0.0, 0.5)


def test_decision_without_threshold_tuning_judges_argmax():
    y = np.array([0, 0, 1, 1])
    transformer = _scores(np.array([0.1, 0.6, 0.7, 0.9]))
    weight, threshold, score = train_stage.choose_decision(y, transformer, None, False, 2)
    assert (weight, threshold) == (0.0, None) and score < 1


def test_threshold_shift_makes_argmax_apply_the_cut_and_keeps_the_order():
    from pipelines.runtime.classifier import apply_threshold

    positive = np.random.default_rng(1).uniform(0.01, 0.99, 500)
    shifted = apply_threshold(_scores(positive), 0.7)
    assert np.array_equal(shifted.argmax(axis=1) == 1, positive >= 0.7 - 1e-6)
    assert np.array_equal(np.argsort(shifted[:, 1], kind="stable"),
                          np.argsort(positive, kind="stable"))
    assert np.allclose(shifted.sum(axis=1), 1, atol=1e-6)
    for unchanged in (None, 0.5):
        assert np.array_equal(apply_threshold(_scores(positive), unchanged), _scores(positive))
