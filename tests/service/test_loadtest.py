"""The load-test gate and the real Locust run, against the running service and a built Bento."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from loadtests.gate import judge, read_locust_stats, summary_markdown
from loadtests.run import run_loadtest, run_locust
from pipelines.runtime.params import LoadtestParams, load_params
from service.bento import build_bento

LIMITS = LoadtestParams(users=2, spawn_rate=2, duration_s=3, min_rps=1.0, max_p95_ms=2000,
                        max_error_ratio=0.05, max_p95_regression=0.2)
GOOD = {"requests": 100, "failures": 0, "error_ratio": 0.0, "rps": 20.0, "p50_ms": 40.0,
        "p95_ms": 100.0}


def test_gate_without_production_record_judges_absolute_thresholds_and_says_so():
    verdict = judge(GOOD, LIMITS, None)
    assert verdict["passed"] and "no production load-test record" in verdict["basis"]
    assert [c["check"] for c in verdict["checks"]] == ["requests/s", "p95 latency (ms)",
                                                        "error ratio"]


def test_gate_fails_a_p95_regression_beyond_the_allowed_share_of_production():
    production = {"model_version": "prod-1", "stats": {**GOOD, "p95_ms": 80.0}}
    verdict = judge(GOOD, LIMITS, production)  # 100 ms > 80 ms * 1.2
    assert not verdict["passed"]
    assert verdict["checks"][-1]["check"] == "p95 vs production (ms)"
    assert not verdict["checks"][-1]["passed"] and "prod-1" in verdict["basis"]
    assert judge(GOOD, LIMITS, {"stats": {**GOOD, "p95_ms": 90.0}})["passed"]


@pytest.mark.parametrize(("field", "value"), [("rps", 0.5), ("p95_ms", 2500.0),
                                               ("error_ratio", 0.2)])
def test_gate_fails_each_absolute_threshold(field, value):
    verdict = judge({**GOOD, field: value}, LIMITS, None)
    assert not verdict["passed"]
    assert sum(not c["passed"] for c in verdict["checks"]) == 1


def test_locust_run_against_the_service_writes_csv_html_and_stats(server, smoke_repo, tmp_path):
    stats = run_locust(server["base"], 2, 2, 3, tmp_path, smoke_repo / "data/holdout.csv", 200)
    assert stats["requests"] > 5 and stats["failures"] == 0
    assert (tmp_path / "locust.html").stat().st_size > 1000
    assert read_locust_stats(tmp_path / "locust_stats.csv") == stats


def test_locust_refuses_a_non_loopback_host(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        run_locust("http://example.com", 1, 1, 1, tmp_path, tmp_path / "h.csv", 10)


def test_built_bento_ships_the_runtime_alone_serves_its_model_and_passes_the_gate(
        smoke_repo, tmp_path, monkeypatch):
    repo = shutil.copytree(smoke_repo, tmp_path / "repo", symlinks=True)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    tag = build_bento(repo / "models/candidate", root=repo)
    # Of the pipeline package the Bento ships the runtime alone (no DVC, git or CLI plumbing).
    src = tmp_path / "bentoml/bentos" / tag.replace(":", "/") / "src"
    assert {p.relative_to(src).as_posix() for p in (src / "pipelines").rglob("*.py")} == {
        p.relative_to(repo).as_posix() for p in [repo / "pipelines/__init__.py",
                                                 *(repo / "pipelines/runtime").glob("*.py")]}
    # Serving the Bento must find the model inside it: hide the training outputs.
    shutil.rmtree(repo / "models/candidate")
    params = load_params(repo / "params.yaml").model_copy(update={"loadtest": LIMITS})
    summary = run_loadtest(params, tag, repo / "reports/loadtest", None)
    assert summary["verdict"]["passed"], summary
    assert summary["model_version"] == tag.split(":")[1].rsplit("-", 1)[0]
    saved = json.loads((repo / "reports/loadtest/summary.json").read_text())
    assert saved["verdict"]["basis"].startswith("absolute thresholds only")
    md = (repo / "reports/loadtest/summary.md").read_text()
    assert md == summary_markdown(saved) and "PASSED" in md
    with sqlite3.connect(repo / "reports/loadtest/predictions.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] >= \
            summary["stats"]["requests"]
    # The build prepared the ONNX graphs inside the Bento's model; `auto` serves INT8 from them
    # on a VNNI CPU (torch INT8 elsewhere), and says so.
    from service.inference import resolve_accel

    [graph] = Path(tmp_path / "bentoml/models/moderation-model").glob("*/onnx/model.int8.onnx")
    server_log = (repo / "reports/loadtest/server.log").read_text()
    chosen = resolve_accel("auto", model_dir=graph.parents[1])
    # the log names the plain path fp32 (a CPU without bf16 or int8 instructions picks it)
    assert f"-> {'fp32' if chosen == 'none' else chosen}" in server_log
