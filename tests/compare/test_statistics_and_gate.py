"""Paired statistics and the gate's rules, on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.analysis.comparison_record import (
    CandidateScores,
    Comparison,
    Holdout,
    ProductionScores,
)
from pipelines.analysis.gate import NO_CHANGE, PROMOTE, REJECT, decide
from pipelines.analysis.head_to_head import behaviour_deltas, fast_macro_f1
from pipelines.analysis.metrics import macro_f1
from pipelines.analysis.stats import mcnemar, paired_bootstrap_delta
from pipelines.runtime.params import load_params

GATE = load_params("params.yaml").gate


def test_fast_macro_f1_matches_sklearn():
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    assert fast_macro_f1(y, p) == pytest.approx(macro_f1(y, p, 2))
    assert fast_macro_f1(y, y) == 1.0


def test_identical_predictions_have_a_zero_width_interval_and_mcnemar_p_one():
    rng = np.random.default_rng(2)
    y, p = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    assert paired_bootstrap_delta(y, p, p, fast_macro_f1, 200, 0.95, 0) == {
        "delta": 0.0, "low": 0.0, "high": 0.0}
    assert mcnemar(y, p, p)["p_value"] == 1.0


def test_a_clearly_better_model_has_an_interval_above_zero_and_a_small_p_value():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 1000)
    worse = np.where(rng.random(1000) < 0.65, y, 1 - y)
    better = np.where(rng.random(1000) < 0.85, y, 1 - y)
    d = paired_bootstrap_delta(y, worse, better, fast_macro_f1, 500, 0.95, 0)
    assert 0 < d["low"] < d["delta"] < d["high"]
    test = mcnemar(y, worse, better)
    assert test["only_candidate_right"] > test["only_production_right"]
    assert test["p_value"] < 1e-6


def test_mcnemar_uses_the_exact_binomial_on_few_disagreements():
    y = np.zeros(20, dtype=int)
    a = np.zeros(20, dtype=int)
    b = a.copy()
    b[:5] = 1  # production right on 5 texts the candidate gets wrong, never the reverse
    assert mcnemar(y, a, b) == {"only_production_right": 5, "only_candidate_right": 0,
                                "p_value": pytest.approx(0.0625)}


def _comparison(delta, low, high, p_value, slice_low=0.0, slice_n=100, insult=(0.9, 0.9),
                mention=(0.02, 0.02)):
    candidate = {"macro_f1": 0.75, "roc_auc": 0.8,
                 "behaviour": {"directional_insult": {"pass_rate": insult[1], "n": 50},
                               "invariance_add_mention": {"flip_rate": mention[1], "n": 50}}}
    return Comparison(
        candidate=CandidateScores("c", "baseline", candidate),
        production=ProductionScores("p", "baseline", {}), confidence=0.95,
        holdout=Holdout("data/holdout.csv", "0" * 32, 1000), changes={},
        deltas={"macro_f1": {"delta": delta, "low": low, "high": high}},
        mcnemar={"p_value": p_value},
        slices={"url": {"n": slice_n, "macro_f1": {"delta": slice_low, "low": slice_low,
                                                   "high": 0.1}}},
        behaviour={"directional_insult": {"metric": "pass_rate", "production": insult[0],
                                          "candidate": insult[1],
                                          "delta": insult[1] - insult[0]},
                   "invariance_add_mention": {"metric": "flip_rate",
                                              "production": mention[0],
                                              "candidate": mention[1],
                                              "delta": mention[1] - mention[0]}},
    )


def test_gate_promotes_only_a_significant_win():
    assert decide(_comparison(0.03, 0.01, 0.05, 0.001), GATE).verdict == PROMOTE
    assert decide(_comparison(0.03, 0.01, 0.05, 0.2), GATE).verdict == NO_CHANGE
    assert decide(_comparison(0.01, -0.01, 0.03, 0.001), GATE).verdict == NO_CHANGE


def test_gate_rejects_below_the_non_inferiority_margin_and_names_it():
    decision = decide(_comparison(-0.01, -0.03, 0.01, 0.3), GATE)
    assert decision.verdict == REJECT
    assert decision.failed == ["non_inferiority.macro_f1"]


def test_gate_gates_protected_slices_only_when_large_enough():
    broken = _comparison(0.0, -0.01, 0.01, 0.9, slice_low=-0.2)
    assert decide(broken, GATE).failed == ["non_inferiority.slice.url"]
    tiny = _comparison(0.0, -0.01, 0.01, 0.9, slice_low=-0.2, slice_n=GATE.min_slice_rows - 1)
    decision = decide(tiny, GATE)
    assert decision.failed == []
    assert any("reported, not gated" in r.message for r in decision.reasons)


def test_gate_rejects_an_invariance_regression_against_production():
    decision = decide(_comparison(0.0, -0.01, 0.01, 0.9, mention=(0.01, 0.08)), GATE)
    assert decision.failed == ["behaviour.invariance_add_mention"]


def test_directional_checks_are_judged_on_their_floor_not_against_production():
    # A bag-of-words production model passes 100% by construction; 90% is no regression.
    above = decide(_comparison(0.03, 0.01, 0.05, 0.001, insult=(1.0, 0.9)), GATE)
    assert above.verdict == PROMOTE
    below = decide(_comparison(0.03, 0.01, 0.05, 0.001, insult=(1.0, 0.5)), GATE)
    assert below.failed == ["floor.behaviour.directional_insult"]


def test_prediction_flips_are_bounded_ordered_and_can_be_masked():
    from pipelines.analysis.head_to_head import prediction_flips

    frame = pd.DataFrame({"id": ["a", "b", "c", "d"],
                          "text": ["kind words", "rude words", "neutral", "same"]})
    y = np.array([0, 1, 0, 0])
    prod = np.array([[0.9, 0.1], [0.6, 0.4], [0.45, 0.55], [0.8, 0.2]])
    cand = np.array([[0.2, 0.8], [0.1, 0.9], [0.55, 0.45], [0.7, 0.3]])
    flips = prediction_flips(frame, y, prod, cand, ["ok", "bad"], limit=2, mask_text=False)
    assert (flips["total"], flips["fixed"], flips["broken"]) == (3, 2, 1)
    assert [f["id"] for f in flips["shown"]] == ["a", "b"]  # largest score change first
    masked = prediction_flips(frame, y, prod, cand, ["ok", "bad"], limit=5, mask_text=True)
    assert all(f["text"].startswith("sha256:") for f in masked["shown"])
    assert "kind words" not in str(masked)


def test_comparison_json_keeps_its_layout_and_drops_head_to_head_keys_without_production():
    with_production = _comparison(0.03, 0.01, 0.05, 0.001).to_json()
    assert list(with_production) == [
        "candidate", "production", "confidence", "holdout", "changes", "label_noise", "deltas",
        "mcnemar",
        "slices", "behaviour", "flips", "plots", "evidently", "seconds"]
    assert list(with_production["production"]) == [
        "version", "kind", "metrics", "bento_tag", "image"]
    bootstrap = Comparison(CandidateScores("c", "baseline", {}), None, 0.95,
                           Holdout("data/holdout.csv", "0" * 32, 10), {}).to_json()
    assert list(bootstrap) == ["candidate", "production", "confidence", "holdout", "changes",
                               "label_noise", "plots", "evidently", "seconds"]
    assert bootstrap["candidate"] == {"version": "c", "kind": "baseline", "metrics": {}}


def _with_evasion(comparison: Comparison, production: float, candidate: float) -> Comparison:
    comparison.candidate.metrics["behaviour"]["evasion_fullwidth"] = {"flip_rate": candidate,
                                                                      "n": 50}
    comparison.behaviour.update(behaviour_deltas(
        {"evasion_fullwidth": {"flip_rate": production}},
        {"evasion_fullwidth": {"flip_rate": candidate}}))
    return comparison


def test_evasion_flip_rates_have_their_own_floor():
    # Below the invariance floor, above the evasion floor: only the evasion floor catches it.
    floors = GATE.floors.behaviour
    rate = (floors["evasion"] + floors["invariance"]) / 2
    assert floors["evasion"] < rate < floors["invariance"]
    decision = decide(_with_evasion(_comparison(0.03, 0.01, 0.05, 0.001), rate, rate), GATE)
    assert decision.failed == ["floor.behaviour.evasion_fullwidth"]
    assert decide(_with_evasion(_comparison(0.03, 0.01, 0.05, 0.001), 0.0, 0.0),
                  GATE).verdict == PROMOTE


def test_gate_rejects_an_evasion_regression_against_production():
    gate = GATE.model_copy(update={"floors": GATE.floors.model_copy(
        update={"behaviour": GATE.floors.behaviour | {"evasion": 1.0}})})
    decision = decide(_with_evasion(_comparison(0.03, 0.01, 0.05, 0.001), 0.0,
                                    gate.behaviour_margin + 0.01), gate)
    assert decision.failed == ["behaviour.evasion_fullwidth"]
