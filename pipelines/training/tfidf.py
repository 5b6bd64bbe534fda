"""The TF-IDF model: word and character n-grams with logistic regression (the train-baseline
stage fits it alone; the train stage fits it beside the transformer for the blend)."""

from __future__ import annotations

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from pipelines.runtime.params import BaselineParams


def build_pipeline(bp: BaselineParams, labels: list[str]) -> Pipeline:
    """The unfitted TF-IDF + logistic regression pipeline with the baseline's settings."""
    features = FeatureUnion([
        ("words", TfidfVectorizer(ngram_range=tuple(bp.word_ngrams), max_features=bp.max_features,
                                  sublinear_tf=True, min_df=2, lowercase=True)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(bp.char_ngrams),
                                  max_features=bp.max_features, sublinear_tf=True, min_df=2)),
    ])
    classifier = LogisticRegression(
        C=bp.C, max_iter=2000, random_state=bp.seed,
        class_weight="balanced" if bp.class_weight == "balanced" else None,
    )
    return Pipeline([("features", features), ("classifier", classifier)])
