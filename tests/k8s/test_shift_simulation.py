"""The label-share check, simulated on the rendered Rollout and AnalysisTemplate (seeded,
bounded): healthy canaries are rarely aborted even at low traffic, a 10-point shift is caught
before the canary takes all traffic (the last weight is held long enough), and main's check is
shown to abort a third of healthy canaries."""

from __future__ import annotations

import pytest

from pipelines.deploy.shift_simulation import (
    MAIN_CHECK,
    Schedule,
    ShiftCheck,
    abort_rate,
    rendered_check,
    rendered_schedule,
    report,
)

TRIALS = 4000


@pytest.fixture(scope="module")
def figures(rendered) -> dict[tuple[str, int], dict]:
    rows = report(rendered["production"], trials=TRIALS, seed=21)
    return {(r["check"], r["requests_per_min"]): r for r in rows}


def test_simulation_runs_the_rendered_schedule_and_check(rendered):
    schedule = rendered_schedule(rendered["production"])
    assert schedule.weights == (0.1, 0.2, 0.3) and schedule.holds_min == (5, 5, 45)
    check = rendered_check(rendered["production"])
    assert check == ShiftCheck("z", 3.3, 60, 3, 3, 0, 30)
    # the window covers the whole canary: its counts are cumulative
    assert check.window_min >= schedule.canary_min


@pytest.mark.parametrize("rate", [40, 100, 200])
def test_healthy_canaries_are_aborted_at_most_one_percent_of_the_time(figures, rate):
    assert figures["rendered", rate]["healthy_abort_rate"] <= 0.01


@pytest.mark.parametrize("rate", [40, 100, 200])
def test_a_ten_point_shift_is_aborted_in_nine_rollouts_of_ten_before_full_traffic(figures,
                                                                                  rate):
    assert figures["rendered", rate]["shifted_abort_rate"] >= 0.9


def test_without_the_final_hold_most_ten_point_shifts_reach_full_traffic(rendered):
    """The 15-minute canary (every weight held 5 minutes) could not catch a 10-point shift at
    40 requests/min with this threshold: the final hold is what gives the test its power."""
    check, schedule = rendered_check(rendered["production"]), rendered_schedule(
        rendered["production"])
    short = Schedule(schedule.weights, (5, 5, 5))
    assert abort_rate(check, short, 40, 0.1, TRIALS, seed=22) < 0.3
    assert abort_rate(check, schedule, 40, 0.1, TRIALS, seed=22) >= 0.9


def test_the_report_compares_the_final_hold_with_the_short_schedule(figures):
    assert figures["rendered", 40]["canary_min"] == 55
    assert figures["rendered, no final hold", 40]["canary_min"] == 15
    assert figures["rendered, no final hold", 40]["shifted_abort_rate"] < \
        figures["rendered", 40]["shifted_abort_rate"]


def test_mains_check_aborted_a_third_of_healthy_canaries_at_40_requests_per_minute(figures):
    assert figures["main", 40]["healthy_abort_rate"] >= 0.25
    assert figures["main", 200]["healthy_abort_rate"] < figures["main", 40]["healthy_abort_rate"]


def test_the_simulation_is_seeded_and_bounded(rendered):
    check, schedule = rendered_check(rendered["production"]), rendered_schedule(
        rendered["production"])
    assert abort_rate(check, schedule, 40, 0.1, 500, seed=3) == \
        abort_rate(check, schedule, 40, 0.1, 500, seed=3)
    with pytest.raises(ValueError, match="bounded"):
        abort_rate(MAIN_CHECK, schedule, 40, 0.0, trials=10**7)
