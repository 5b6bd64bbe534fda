"""The evasion suite of the behavioural checks, on a small real TF-IDF model: disguises flip
what the model catches unless the classifier canonicalises its input."""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest

from pipelines.analysis.behaviour import EVASIONS, run_behaviour_checks, run_evasion_checks
from pipelines.runtime.canonical import canonical_texts
from pipelines.runtime.classifier import BaselineClassifier
from pipelines.runtime.metadata import ModelMetadata
from pipelines.runtime.params import load_params
from pipelines.training.tfidf import build_pipeline

LABELS = ["not-offensive", "offensive"]
INSULTS = ["idiot", "stupid", "moron", "loser", "dumb", "pathetic", "trash", "clown"]
CALM = ["lovely", "sunny", "great", "thanks", "friend", "happy", "weekend", "coffee"]


def _texts(words: list[str], n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    fillers = ["you are", "what a", "such a", "honestly", "that was", "my"]
    return [f"{fillers[i % len(fillers)]} {' '.join(rng.choice(words, 2))}" for i in range(n)]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    # Two calm texts per insult, as in moderation data: text the model cannot read is calm.
    texts = _texts(INSULTS, 80, 0) + _texts(CALM, 160, 1)
    labels = [1] * 80 + [0] * 160
    params = load_params("params.yaml").baseline.model_copy(update={"max_features": 2000})
    model_dir = tmp_path_factory.mktemp("tfidf")
    joblib.dump(build_pipeline(params, LABELS).fit(canonical_texts(texts), labels),
                model_dir / "model.joblib")
    return BaselineClassifier(model_dir, ModelMetadata.model_construct(labels=LABELS,
                                                                       version="tiny"))


def _holdout(classifier):
    texts = _texts(INSULTS, 40, 2) + _texts(CALM, 40, 3)
    y = np.array([1] * 40 + [0] * 40)
    return texts, y, classifier.predict_proba(texts)


def test_canonicalising_classifier_is_not_fooled_by_any_disguise(classifier):
    texts, y, proba = _holdout(classifier)
    assert (proba.argmax(axis=1) == y).mean() > 0.9, "the tiny model should learn the words"
    results = run_evasion_checks(classifier, texts, y, proba, sample_size=300)
    assert set(results) == {f"evasion_{name}" for name in EVASIONS}
    assert all(r["flip_rate"] == 0.0 for r in results.values()), results


def test_without_the_canonicaliser_disguises_pay(classifier):
    texts, y, _ = _holdout(classifier)
    classifier.canonical = False
    try:
        results = run_evasion_checks(classifier, texts, y, classifier.predict_proba(texts), 300)
    finally:
        classifier.canonical = True
    # Styled letters share no n-gram with plain ones; the other disguises leave some intact.
    for name in ("fullwidth", "math_bold", "circled"):
        assert results[f"evasion_{name}"]["flip_rate"] == 1.0, (name, results)
    for name in EVASIONS:
        assert results[f"evasion_{name}"]["flip_rate"] > 0, (name, list(results.values()))


def test_suite_counts_only_offensive_texts_the_model_catches(classifier):
    texts, y, proba = _holdout(classifier)
    caught = int(((y == 1) & (proba.argmax(axis=1) == 1)).sum())
    missed_on_purpose = proba.copy()
    missed_on_purpose[:5] = [1.0, 0.0]  # five offensive texts the model "gets wrong"
    results = run_evasion_checks(classifier, texts, y, missed_on_purpose, 300)
    assert results["evasion_fullwidth"]["n"] == caught - 5
    assert run_evasion_checks(classifier, texts, y, proba, 10)["evasion_circled"]["n"] == 10
    assert run_evasion_checks(classifier, texts, np.zeros_like(y), proba, 300) == {}


def test_behaviour_checks_report_the_evasion_suite_beside_the_invariances(classifier):
    texts, y, proba = _holdout(classifier)
    results = run_behaviour_checks(classifier, texts, y, proba,
                                   load_params("params.yaml").evaluate.behaviour)
    assert "invariance_add_mention" in results and "directional_insult" in results
    assert results["evasion_zero_width"] == {"flip_rate": 0.0, "n": 40}


def test_baseline_training_learns_from_canonical_texts(tmp_path):
    """Train and serve agree: a disguised training row teaches the plain words."""
    from pipelines.stages.baseline import train_baseline

    disguised = [EVASIONS["fullwidth"](t) for t in _texts(INSULTS, 40, 4)]
    rows = [(f"t{i}", text, "offensive") for i, text in enumerate(disguised)]
    rows += [(f"c{i}", text, "not-offensive") for i, text in enumerate(_texts(CALM, 40, 5))]
    train_file, holdout_file = tmp_path / "train.csv", tmp_path / "holdout.csv"
    pd.DataFrame(rows, columns=["id", "text", "label"]).to_csv(train_file, index=False)
    # metadata records the holdout's hash: a file of its own, not the repository's data/
    pd.DataFrame(rows[:2], columns=["id", "text", "label"]).to_csv(holdout_file, index=False)
    params = load_params("params.yaml")
    params = params.model_copy(update={
        "data": params.data.model_copy(update={"train_file": str(train_file),
                                               "holdout_file": str(holdout_file)}),
        "baseline": params.baseline.model_copy(update={"max_features": 2000})})
    train_baseline(params, tmp_path / "model")
    features = joblib.load(tmp_path / "model/model.joblib").named_steps["features"]
    vocabulary = {term for _, vectoriser in features.transformer_list
                  for term in vectoriser.vocabulary_}
    assert "idiot" in vocabulary
    assert not any(ord(c) > 0xFF00 for term in vocabulary for c in term)
