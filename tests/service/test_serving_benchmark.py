"""The serving benchmark's arithmetic: core split, pinning, and the headline figure."""

from __future__ import annotations

import subprocess

from loadtests.benchmark import describe_headline, headline, pinned, split_cores


def test_two_cores_put_the_server_on_core_1_and_locust_on_core_0():
    assert split_cores([1, 0]) == ([1], [0])
    assert split_cores([0, 1, 2, 3]) == ([1, 2, 3], [0])
    assert split_cores([5]) == ([5], [5])  # one core: shared, and the run says so


def test_a_pinned_command_runs_only_on_its_cores():
    import os

    core = sorted(os.sched_getaffinity(0))[-1]
    show = "import os; print(sorted(os.sched_getaffinity(0)))"
    out = subprocess.run(pinned(["python", "-c", show], [core]), capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == f"[{core}]"


def test_headline_is_requests_per_core_at_p95_as_a_share_of_the_raw_limit():
    figures = headline(rps_at_p95=45.0, limit_rps=60.0, cores=1)
    assert figures == {"rps_per_core_at_p95": 45.0, "limit_rps_per_core": 60.0,
                       "share_of_limit": 0.75, "meets_goal": True}
    two = headline(rps_at_p95=50.0, limit_rps=120.0, cores=2)
    assert two["rps_per_core_at_p95"] == 25.0 and two["share_of_limit"] == 0.417
    assert two["meets_goal"] is False
    assert "75% of the raw forward limit" in describe_headline("service", figures, 80.0)
    assert "goal >= 70%: met" in describe_headline("service", figures, 80.0)


def test_a_server_that_never_meets_p95_is_said_so_not_divided_by_zero():
    figures = headline(rps_at_p95=None, limit_rps=60.0, cores=1)
    assert figures["share_of_limit"] is None and figures["rps_per_core_at_p95"] is None
    assert figures["meets_goal"] is None
    line = describe_headline("naive", figures, best_p95_ms=240.0)
    assert "never reached p95 <= 100 ms" in line and "best p95 240 ms" in line
