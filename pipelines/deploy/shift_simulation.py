"""How often the label-share-shift check aborts a canary, simulated (seeded, bounded): the
rendered Rollout's weights and pauses, the rendered AnalysisTemplate's measurement schedule,
window, threshold and failure limit, Poisson request arrivals with one text per request, and a
canary whose flagged share is the stable one's (healthy) or moved by `shift`.

The statistic mirrors the template's PromQL: |z| of the two-proportion test between the canary's
and the stable's flagged shares over the window, with the pooled share; an empty result (fewer
canary texts than `min-texts`) is inconclusive. Prometheus' extrapolation of increase() at the
window edges is left out (counts are exact)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from pipelines.deploy.policy import DURATION, Manifests

METRIC = "label-share-shift"
# The scenario: a third of the texts flagged on stable.
BASE_SHARE = 0.33
# Minutes of stable-only traffic before the canary starts (the stable side's window fills).
WARMUP_MIN = 30


def minutes(duration: str) -> int:
    if not DURATION.match(str(duration)):
        raise ValueError(f"{duration!r} is not a duration like 5m")
    value, unit = int(duration[:-1]), duration[-1]
    return {"s": value / 60, "m": value, "h": value * 60}[unit]


@dataclass(frozen=True)
class ShiftCheck:
    """One label-share check as an AnalysisTemplate metric runs it."""

    statistic: str  # "z": |two-proportion z|; "abs": |share difference| (main's check)
    threshold: float
    window_min: int
    interval_min: int
    initial_delay_min: int
    failure_limit: int
    min_count: int


@dataclass(frozen=True)
class Schedule:
    """Canary weights (fractions) and how long each is held (minutes), from the rendered
    Rollout."""

    weights: tuple[float, ...]
    holds_min: tuple[int, ...]

    @property
    def canary_min(self) -> int:
        """Minutes from the first canary weight until the rollout reaches 100 %."""
        return sum(self.holds_min)


def rendered_check(docs: list[dict]) -> ShiftCheck:
    """The label-share check of the rendered AnalysisTemplate."""
    template = Manifests(docs).get("AnalysisTemplate", "moderation-canary-health")
    args = {a["name"]: a.get("value") for a in template["spec"]["args"]}
    metric = next(m for m in template["spec"]["metrics"] if m["name"] == METRIC)
    query = metric["provider"]["prometheus"]["query"]
    windows = set(re.findall(r"\[(\d+[smh])\]", query))
    if len(windows) != 1:
        raise ValueError(f"{METRIC}: expected one range window in the query, found {windows}")
    return ShiftCheck("z", float(args["max-label-share-z"]), minutes(windows.pop()),
                      minutes(metric["interval"]), minutes(metric.get("initialDelay", "0m")),
                      int(metric.get("failureLimit", 0)), int(args["min-texts"]))


def rendered_schedule(docs: list[dict]) -> Schedule:
    """Each weight below 100 and the pauses that follow it until the next weight."""
    steps = Manifests(docs).get("Rollout", "moderation")["spec"]["strategy"]["canary"]["steps"]
    weights, holds = [], []
    for step in steps:
        if 0 < step.get("setWeight", 100) < 100:
            weights.append(step["setWeight"] / 100)
            holds.append(0)
        elif "setWeight" in step:
            break
        elif "pause" in step and weights:
            holds[-1] += minutes(step["pause"]["duration"])
    return Schedule(tuple(weights), tuple(holds))


def abort_rate(check: ShiftCheck, schedule: Schedule, requests_per_min: float, shift: float,
               trials: int = 4000, seed: int = 0) -> float:
    """Share of simulated rollouts the check aborts (failures > failureLimit before the last
    partial weight's hold ends, i.e. before the canary takes all traffic)."""
    if not 0 < trials <= 200_000:
        raise ValueError(f"trials {trials} must be in 1..200000 (the simulation is bounded)")
    rng = np.random.default_rng(seed)
    per_minute = np.repeat(np.array(schedule.weights), np.array(schedule.holds_min))
    duration = len(per_minute)
    weight = np.concatenate([np.zeros(WARMUP_MIN), per_minute])
    arrivals = rng.poisson(requests_per_min, size=(trials, WARMUP_MIN + duration))
    canary_n = rng.binomial(arrivals, weight)
    stable_n = arrivals - canary_n
    canary_k = rng.binomial(canary_n, min(1.0, BASE_SHARE + shift))
    stable_k = rng.binomial(stable_n, BASE_SHARE)
    failures = np.zeros(trials, dtype=int)
    t = check.initial_delay_min
    while t < duration:
        end = WARMUP_MIN + t
        lo = max(0, end - check.window_min)
        n1, k1 = canary_n[:, lo:end].sum(1), canary_k[:, lo:end].sum(1)
        n0, k0 = stable_n[:, lo:end].sum(1), stable_k[:, lo:end].sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            p1, p0 = k1 / n1, k0 / n0
            if check.statistic == "z":
                pooled = (k1 + k0) / (n1 + n0)
                value = np.abs(p1 - p0) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
            else:
                value = np.abs(p1 - p0)
        judged = (n1 >= check.min_count) & (n0 > 0)
        failures += (judged & (value > check.threshold)).astype(int)
        t += check.interval_min
    return float((failures > check.failure_limit).mean())


# Main's check before issue 21: |share difference| > 0.10 over 5 minutes, measured every 2, at
# least 20 canary requests, aborted at the second failure; main's schedule held every weight
# 5 minutes.
MAIN_CHECK = ShiftCheck("abs", 0.10, 5, 2, 2, 1, 20)
MAIN_HOLDS_MIN = (5, 5, 5)


def report(docs: list[dict], rates=(40, 100, 200), shift: float = 0.10, trials: int = 4000,
           seed: int = 0) -> list[dict]:
    """Abort rates of healthy and shifted canaries per traffic rate: the rendered check on the
    rendered schedule, the rendered check without the final hold (every weight held as long as
    the first) and main's check on main's schedule."""
    schedule = rendered_schedule(docs)
    check = rendered_check(docs)
    short = Schedule(schedule.weights, MAIN_HOLDS_MIN)
    rows = []
    for name, chk, sched in (("rendered", check, schedule),
                             ("rendered, no final hold", check, short),
                             ("main", MAIN_CHECK, short)):
        for rate in rates:
            rows.append({"check": name, "requests_per_min": rate,
                         "canary_min": sched.canary_min,
                         "healthy_abort_rate": abort_rate(chk, sched, rate, 0.0, trials, seed),
                         "shifted_abort_rate": abort_rate(chk, sched, rate, shift, trials,
                                                          seed + 1)})
    return rows
