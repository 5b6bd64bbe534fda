"""The loop on the deployed setting (serve.log_text: sample): the review UI lists the kept,
redacted texts and the export turns their reviews into training rows."""

from __future__ import annotations

import random

import pandas as pd

from pipelines.core.data import COLUMNS
from pipelines.monitor.feedback import plan_rows, read_reviewed
from service.kept_text import TextPolicy
from service.predlog import PredictionLog, prediction_rows
from service.review.store import Filters, ReviewStore
from tests.feedback.conftest import LABELS, prediction

# (text, offensive score): flagged, uncertain, and confident negatives.
TRAFFIC = ([(f"you absolute clown number {i}, mail me at c{i}@example.org", 0.93)
            for i in range(40)]
           + [(f"not sure about this one {i} @someone", 0.4) for i in range(40)]
           + [(f"have a lovely day friend {i}", 0.03) for i in range(400)])


def test_reviews_of_a_sampled_log_become_redacted_training_rows(db_url):
    policy = TextPolicy("sample", share=0.05, uncertain=0.15, rng=random.Random(3))
    log = PredictionLog(db_url).start()
    for i, (text, score) in enumerate(TRAFFIC):
        log.record(prediction_rows(f"k{i}", [text], [prediction(score)], 5.0, policy,
                                   positive=LABELS[1]))
    log.close()

    store = ReviewStore(db_url, LABELS)
    items = store.list_items(Filters(), limit=500)
    kept = [item for item in items if item["text"] is not None]
    # Every flagged and uncertain text, and about 5 % of the confident negatives.
    assert sum("clown" in i["text"] for i in kept) == 40
    assert sum("not sure" in i["text"] for i in kept) == 40
    assert 5 <= sum("lovely" in i["text"] for i in kept) <= 40
    assert not any("@example.org" in i["text"] or "@someone" in i["text"] for i in kept)

    store.save_corrections([(i["id"], i["label"]) for i in items], "alice")
    reviewed, _ = read_reviewed(db_url, LABELS)
    empty = pd.DataFrame(columns=COLUMNS)
    plan = plan_rows(reviewed, empty, empty, LABELS, "feedback")

    assert len(plan.rows) == len(kept)
    assert plan.skipped["text_only_hashed"] == len(items) - len(kept)
    assert plan.rows.text.str.contains("EMAIL").sum() == 40
    assert not plan.rows.text.str.contains("example.org").any()
