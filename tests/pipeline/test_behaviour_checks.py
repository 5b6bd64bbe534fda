"""Behavioural checks declared per task (evaluate.behaviour.checks, gate.floors.behaviour):
each kind, the declaration's errors, and the gate judging only what the task declares."""

from __future__ import annotations

import copy
import re
import sys

import numpy as np
import pytest
import yaml

from pipelines.analysis.behaviour import BehaviourError, run_behaviour_checks
from pipelines.analysis.gate import floor_reasons
from pipelines.analysis.scoring import load_holdout
from pipelines.runtime.classifier import load_classifier
from pipelines.runtime.params import (
    BehaviourParams,
    ParamsError,
    load_params,
    parse_params,
    read_yaml,
)
from tests.conftest import ROOT, run

RAW = read_yaml(ROOT / "params.yaml")


class KeywordClassifier:
    """Flags a text (positive = last label) when it contains one of its words."""

    def __init__(self, words: list[str], labels=("not-hate", "hate")):
        self.words, self.labels = words, list(labels)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        hits = np.array([sum(w in t.lower() for w in self.words) for t in texts], dtype=float)
        score = np.clip(0.2 + 0.6 * hits, 0, 0.99)
        return np.column_stack([1 - score, score])


def behaviour(checks: dict, sample_size: int = 50) -> BehaviourParams:
    return BehaviourParams.model_validate({"written_for": ["not-hate", "hate"],
                                           "sample_size": sample_size, "checks": checks})


def score(clf, texts, checks, labels=None):
    y = np.array(labels if labels is not None else [0] * len(texts))
    return run_behaviour_checks(clf, texts, y, clf.predict_proba(texts), behaviour(checks))


def test_only_the_declared_checks_run():
    clf = KeywordClassifier(["vermin"])
    results = score(clf, ["hello there", "@user nice day"],
                    {"inv": {"kind": "invariance", "perturbations": ["add_url"]}})
    assert list(results) == ["inv_add_url"]
    assert score(clf, ["hello"], {}) == {}


def test_term_swap_counts_flips_when_one_group_is_judged_differently():
    # The model flags "immigrants" but not "refugees": swapping one for the other flips both.
    clf = KeywordClassifier(["immigrants"])
    texts = ["immigrants live here", "Refugees live here", "nobody named"]
    results = score(clf, texts, {"swap": {"kind": "term_swap",
                                          "terms": ["immigrants", "refugees"]}})
    assert results["swap"] == {"flip_rate": 1.0, "n": 2}  # the third text has no term
    fair = KeywordClassifier(["immigrants", "refugees"])
    assert score(fair, texts, {"swap": {"kind": "term_swap", "terms": ["immigrants",
                                                                       "refugees"]}}
                 )["swap"]["flip_rate"] == 0.0


def test_directional_templates_fill_text_and_terms_on_calm_texts():
    clf = KeywordClassifier(["animals"])
    texts = ["good morning", "lovely weather"]
    results = score(clf, texts, {"up": {"kind": "directional",
                                        "templates": ["{text} {term} are animals"],
                                        "terms": ["immigrants"]}})
    assert results["up"] == {"pass_rate": 1.0, "n": 2}
    # An appended insult does not raise a hate model's score: the offensive task's check fails.
    insult = score(clf, texts, {"insult": {"kind": "directional",
                                           "templates": ["{text} you idiot"]}})
    assert insult["insult"] == {"pass_rate": 0.0, "n": 2}


def test_template_checks_expect_a_label_on_every_filled_template():
    clf = KeywordClassifier(["hate"])
    results = score(clf, ["anything"], {"neutral": {
        "kind": "template", "templates": ["I don't hate {term}", "{term} are welcome here"],
        "terms": ["immigrants", "women"], "expect": "not-hate"}})
    # The negations name "hate" and are flagged by a bag of words: 2 of 4 pass.
    assert results["neutral"] == {"pass_rate": 0.5, "n": 4}


def test_an_unknown_perturbation_is_an_error_naming_the_key():
    clf = KeywordClassifier(["x"])
    with pytest.raises(BehaviourError, match=r"evaluate\.behaviour\.checks\.inv\.perturbations: "
                                             r"unknown \['add_emoji'\]"):
        score(clf, ["a text"], {"inv": {"kind": "invariance", "perturbations": ["add_emoji"]}})


def _params(edit) -> dict:
    raw = copy.deepcopy(RAW)
    edit(raw)
    return raw


def test_a_declared_check_without_a_floor_is_an_error_naming_the_key():
    def add_check(raw):
        raw["evaluate"]["behaviour"]["checks"]["swap"] = {"kind": "term_swap",
                                                          "terms": ["a", "b"]}
    with pytest.raises(ParamsError, match=re.escape(
            "gate.floors.behaviour.swap: missing: the check evaluate.behaviour.checks.swap has "
            "no floor; add `swap: <max flip rate>`")):
        parse_params(_params(add_check))


def test_a_floor_for_an_undeclared_check_is_an_error_naming_the_key():
    def drop_check(raw):
        del raw["evaluate"]["behaviour"]["checks"]["directional_insult"]
    with pytest.raises(ParamsError, match=re.escape(
            "gate.floors.behaviour.directional_insult: no check "
            "evaluate.behaviour.checks.directional_insult is declared")):
        parse_params(_params(drop_check))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda b: b["checks"].update(neutral={"kind": "template", "templates": ["x"],
                                           "expect": "hateful"}),
     "evaluate.behaviour.checks.neutral.expect: 'hateful' is not one of data.labels"),
    (lambda b: b["checks"].update(up={"kind": "directional", "templates": ["no slot"]}),
     "has no {text} placeholder"),
    (lambda b: b["checks"].update(up={"kind": "directional", "templates": ["{text} {term}"]}),
     "uses {term} but `terms` is empty"),
    (lambda b: b["checks"].update(invariance_x={"kind": "term_swap", "terms": ["a", "b"]}),
     "results of 'invariance' are named invariance_<item>"),
    (lambda b: b["checks"].update(up={"kind": "sideways"}), "does not match any of the "
                                                            "expected tags"),
])
def test_a_malformed_declaration_is_refused(edit, message):
    def apply(raw):
        edit(raw["evaluate"]["behaviour"])
        for name in raw["evaluate"]["behaviour"]["checks"]:
            raw["gate"]["floors"]["behaviour"].setdefault(name, 0.5)
    with pytest.raises(ParamsError, match=re.escape(message)):
        parse_params(_params(apply))


def test_check_params_exits_2_naming_the_missing_floor(fresh_repo):
    raw = read_yaml(fresh_repo / "params.yaml")
    del raw["gate"]["floors"]["behaviour"]["evasion"]
    (fresh_repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    result = run([sys.executable, "-m", "pipelines", "check-params"], fresh_repo, check=False)
    assert result.returncode == 2
    assert "gate.floors.behaviour.evasion: missing" in result.stderr


def test_results_of_an_undeclared_check_never_gate():
    gate = load_params(ROOT / "params.yaml").gate
    candidate = {"macro_f1": 0.9, "roc_auc": 0.9, "behaviour": {
        "invariance_add_url": {"flip_rate": 0.0, "n": 10},
        "leftover": {"pass_rate": 0.0, "n": 10}}}
    checks = [r.check for r in floor_reasons(candidate, gate)]
    assert checks == ["floor.macro_f1", "floor.roc_auc", "floor.behaviour.invariance_add_url"]


def test_the_offensive_declaration_reproduces_productions_recorded_results(base_repo,
                                                                            monkeypatch):
    # models/production.yaml's behaviour was recorded before checks were declared per task.
    monkeypatch.chdir(base_repo)
    params = load_params("params.yaml")
    recorded = read_yaml(base_repo / "models/production.yaml")["metrics"]["behaviour"]
    clf = load_classifier("models/production")
    frame, y = load_holdout(params.data)
    texts = list(frame.text)
    results = run_behaviour_checks(clf, texts, y, clf.predict_proba(texts),
                                   params.evaluate.behaviour)
    assert {name: results[name] for name in recorded} == recorded
    assert list(results)[:5] == list(recorded)
