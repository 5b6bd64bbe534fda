"""The promotion gate: turn a comparison into promote / reject / no significant change."""

from __future__ import annotations

from typing import Any

from pipelines.analysis.comparison_record import Comparison
from pipelines.core.decision import NO_CHANGE, PROMOTE, REJECT, Decision, Reason
from pipelines.runtime.params import GateParams


def _reason(check: str, passed: bool, message: str) -> Reason:
    return Reason(check=check, passed=passed, message=message)


def behaviour_floor(result: str, floors: dict[str, float]) -> tuple[str, float] | None:
    """The declared check a behavioural result belongs to (`<check>` or `<check>_<item>`) and
    its floor; None for a result of a check the task does not declare (never gating)."""
    for check, floor in floors.items():
        if result == check or result.startswith(check + "_"):
            return check, floor
    return None


def floor_reasons(candidate: dict[str, Any], gate: GateParams) -> list[Reason]:
    """Absolute floors on the candidate alone: macro-F1, ROC-AUC and each declared behavioural
    check's rate (gate.floors.behaviour)."""
    floors = gate.floors
    out = []
    for key, floor in (("macro_f1", floors.macro_f1), ("roc_auc", floors.roc_auc)):
        value = candidate.get(key)
        passed = value is not None and value >= floor
        out.append(_reason(f"floor.{key}", passed, f"candidate {key} {value} "
                           f"{'>=' if passed else '<'} floor {floor}"))
    for name, check in candidate.get("behaviour", {}).items():
        declared = behaviour_floor(name, floors.behaviour)
        if declared is None:
            continue
        key, floor = declared
        if "flip_rate" in check:
            passed = check["flip_rate"] <= floor
            out.append(_reason(f"floor.behaviour.{name}", passed,
                               f"flip rate {check['flip_rate']} {'<=' if passed else '>'} "
                               f"{floor} (gate.floors.behaviour.{key})"))
        elif "pass_rate" in check:
            passed = check["pass_rate"] >= floor
            out.append(_reason(f"floor.behaviour.{name}", passed,
                               f"pass rate {check['pass_rate']} {'>=' if passed else '<'} "
                               f"{floor} (gate.floors.behaviour.{key})"))
    return out


def non_inferiority_reasons(comparison: Comparison, gate: GateParams) -> list[Reason]:
    """Macro-F1: the delta's lower bound must clear -margin; protected slices: the delta itself."""
    out = []
    d = comparison.deltas["macro_f1"]
    passed = d["low"] >= -gate.macro_f1_margin
    out.append(_reason("non_inferiority.macro_f1", passed,
                       f"macro-F1 delta {d['delta']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]; "
                       f"lower bound {'>=' if passed else '<'} -{gate.macro_f1_margin}"))
    for name in gate.protected_slices:
        s = comparison.slices.get(name)
        if s is None or s["n"] < gate.min_slice_rows:
            n = 0 if s is None else s["n"]
            out.append(_reason(f"non_inferiority.slice.{name}", True,
                               f"slice {name!r} has {n} holdout rows, fewer than "
                               f"gate.min_slice_rows={gate.min_slice_rows}: reported, not gated"))
            continue
        # Slices are small, so their intervals are wide: demanding the lower bound clear the
        # margin would reject good candidates on noise. The observed drop must stay within it.
        d = s["macro_f1"]
        passed = d["delta"] >= -gate.slice_margin
        out.append(_reason(f"non_inferiority.slice.{name}", passed,
                           f"slice {name!r} (n={s['n']}) macro-F1 delta {d['delta']:+.4f} "
                           f"{'>=' if passed else '<'} -{gate.slice_margin} "
                           f"(interval [{d['low']:+.4f}, {d['high']:+.4f}])"))
    return out


def behaviour_reasons(comparison: Comparison, gate: GateParams) -> list[Reason]:
    """Flip rates of the declared checks (invariance, evasion, term swap) may not worsen by
    more than behaviour_margin against production.

    Directional checks are judged on their floor alone: a bag-of-words production model passes
    them by construction (every insult word adds weight), so a relative margin there would
    measure the model family, not a regression.
    """
    out = []
    for name, d in comparison.behaviour.items():
        if d.get("production") is None or d.get("candidate") is None:
            continue
        if behaviour_floor(name, gate.floors.behaviour) is None:
            continue
        if d["metric"] != "flip_rate":
            continue
        # Flip rates should go down, pass rates up: orient so that negative is worse.
        worse_by = d["delta"] if d["metric"] == "flip_rate" else -d["delta"]
        passed = worse_by <= gate.behaviour_margin
        out.append(_reason(f"behaviour.{name}", passed,
                           f"{d['metric']} {d['production']} -> {d['candidate']} "
                           f"({d['delta']:+.4f}); allowed to worsen by {gate.behaviour_margin}"))
    return out


def decide(comparison: Comparison, gate: GateParams) -> Decision:
    """The decision with every reason; bootstrap (no production) uses the floors only."""
    candidate = comparison.candidate.metrics
    reasons = floor_reasons(candidate, gate)
    bootstrap = comparison.production is None
    if bootstrap:
        reasons.append(_reason("bootstrap", True, "no production model (models/production.yaml "
                               "has version: null): judged on absolute floors only"))
    else:
        reasons += non_inferiority_reasons(comparison, gate) + behaviour_reasons(comparison, gate)
    failed = [r for r in reasons if not r.passed]
    if failed:
        verdict = REJECT
    elif bootstrap:
        verdict = PROMOTE
    else:
        d, test = comparison.deltas["macro_f1"], comparison.mcnemar
        significant_win = d["low"] > 0 and test["p_value"] < gate.significance
        reasons.append(_reason("significance", True,
                               f"macro-F1 delta {d['delta']:+.4f}, interval low {d['low']:+.4f}, "
                               f"McNemar p={test['p_value']:.4g} (significant below "
                               f"{gate.significance}): "
                               + ("a real improvement" if significant_win
                                  else "not distinguishable from noise")))
        verdict = PROMOTE if significant_win else NO_CHANGE
    return Decision(verdict=verdict, bootstrap=bootstrap, failed=[r.check for r in failed],
                    reasons=reasons, candidate_version=comparison.candidate.version,
                    production_version=None if bootstrap else comparison.production.version)
