"""The champion-vs-challenger scenarios of the issue, each on baseline models trained here."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from pipelines.core.data import read_split, write_split
from pipelines.core.decision import Decision
from pipelines.stages.compare import compare_to_production
from tests.compare.conftest import sh

OTHER_TOPIC = ("the slow braised lentil casserole needs cumin turmeric and fresh coriander "
               "before the sourdough crust bakes in a cast iron skillet")
SWAP = {"offensive": "not-offensive", "not-offensive": "offensive"}


def flip_labels(share: float, seed: int = 7):
    def transform(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        rows = np.random.default_rng(seed).random(len(frame)) < share
        frame.loc[rows, "label"] = frame.loc[rows, "label"].map(SWAP)
        return frame
    return transform


def mislabel_urls(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    urls = frame.text.str.contains("https://", regex=False)
    frame.loc[urls, "label"] = frame.loc[urls, "label"].map(SWAP)
    return frame


def longer_and_off_topic(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["text"] = frame.text + f" {OTHER_TOPIC} {OTHER_TOPIC}"
    return frame


def compare(ws, name, candidate, params=None):
    out = ws.root / "out" / name
    with ws.inside():
        decision = compare_to_production(params or ws.params, candidate, out)
    return decision, json.loads((out / "comparison.json").read_text()), out


@pytest.fixture(scope="module")
def same_data(workspace):
    """Production against a baseline retrained on the same data with another C."""
    return compare(workspace, "same", workspace.train("same_data_other_c", C=2.0))


def test_retraining_on_the_same_data_is_not_a_significant_win(same_data):
    decision, comparison, out = same_data
    assert comparison["flips"]["total"] > 0, "the retrained model should differ a little"
    assert decision.verdict == "no significant change"
    assert decision.failed == []
    assert comparison["mcnemar"]["p_value"] >= 0.05
    delta = comparison["deltas"]["macro_f1"]
    assert delta["low"] < 0 < delta["high"]
    assert "NO SIGNIFICANT CHANGE" in (out / "pr_body.md").read_text().splitlines()[0]


def test_thirty_percent_flipped_labels_is_rejected_naming_macro_f1_and_ci_fails_after_reports(
        workspace):
    candidate = workspace.train("flipped_30", flip_labels(0.3))
    out = workspace.root / "out" / "flipped"
    result = sh([sys.executable, "-m", "pipelines", "compare", str(candidate), "--out", str(out)],
                workspace.root, check=False, CI="true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "non_inferiority.macro_f1" in result.stderr
    decision = Decision.load(out / "decision.json")
    assert decision.verdict == "reject"
    assert "non_inferiority.macro_f1" in decision.failed
    # Every report is on disk even though the job failed.
    for name in ("pr_body.md", "comparison.json", "quality.html", "quality.json", "drift.html",
                 "drift.json", "confusion_candidate.png", "confusion_production.png",
                 "pr_curves.png"):
        assert (out / name).stat().st_size > 0, name
    body = (out / "pr_body.md").read_text()
    assert body.startswith("## Model comparison: ❌ **REJECT**")
    assert "❌ `non_inferiority.macro_f1`" in body


def test_one_broken_slice_is_rejected_naming_the_slice_and_ci_flag_fails_the_job(workspace):
    candidate = workspace.train("urls_mislabelled", mislabel_urls)
    out = workspace.root / "out" / "url"
    result = sh([sys.executable, "-m", "pipelines", "compare", str(candidate), "--out", str(out),
                 "--ci"], workspace.root, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "non_inferiority.slice.url" in result.stderr
    decision = Decision.load(out / "decision.json")
    comparison = json.loads((out / "comparison.json").read_text())
    assert decision.verdict == "reject"
    assert "non_inferiority.slice.url" in decision.failed
    slices = comparison["slices"]
    worst = min(slices, key=lambda s: slices[s]["macro_f1"]["delta"])
    assert worst == "url"
    assert "❌ `non_inferiority.slice.url`" in (out / "pr_body.md").read_text()


def test_shifted_training_data_is_flagged_as_drift(workspace):
    # A new data version, as a data.dvc change brings it; production's data stays in DVC.
    train, pointer = workspace.root / "data" / "train.csv", workspace.root / "data.dvc"
    saved_train, saved_pointer = train.read_bytes(), pointer.read_bytes()
    try:
        with workspace.inside():
            write_split(longer_and_off_topic(read_split(train)), train)
        sh(["dvc", "add", "--quiet", "data"], workspace.root)
        candidate = workspace.train("shifted")
        decision, comparison, out = compare(workspace, "shifted", candidate)
    finally:
        train.write_bytes(saved_train)
        pointer.write_bytes(saved_pointer)
        workspace.models.pop("shifted", None)
    drift = comparison["evidently"]["drift"]
    assert drift["flagged"], drift
    assert {"length", "words", "unseen_word_share"} <= set(drift["drifted"])
    assert "label" not in drift["drifted"]
    assert drift["columns"]["length"]["current_mean"] > 2 * drift["columns"]["length"][
        "reference_mean"]
    assert comparison["changes"]["dataset"]["same"] is False
    body = (out / "pr_body.md").read_text()
    assert "**Drift flagged** in" in body and "unseen_word_share" in body


def test_same_training_data_shows_no_drift(same_data):
    _, comparison, _ = same_data
    assert comparison["evidently"]["drift"]["flagged"] is False
