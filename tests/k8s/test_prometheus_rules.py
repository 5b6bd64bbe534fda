"""The rendered PrometheusRule passes `promtool check rules`, and every alert fires (and stays
quiet) as its `promtool test rules` unit tests say (tests/k8s/prometheus/rules_test.yaml)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import yaml

from pipelines.deploy.policy import Manifests
from tests.k8s.conftest import REPO
from tests.k8s.system import require_tool

UNIT_TESTS = REPO / "tests/k8s/prometheus/rules_test.yaml"
# The week-long label-share case, evaluated every 10 minutes instead of every minute.
WEEKLY_UNIT_TESTS = REPO / "tests/k8s/prometheus/rules_test_weekly.yaml"


def write_rule_file(rendered: dict[str, list[dict]], folder: Path,
                    edit_expr=lambda expr: expr) -> Path:
    """The rule groups of the rendered PrometheusRule as a Prometheus rule file."""
    (rule,) = Manifests(rendered["production"]).of_kind("PrometheusRule")
    groups = copy.deepcopy(rule["spec"]["groups"])
    for group in groups:
        for r in group["rules"]:
            r["expr"] = edit_expr(r["expr"])
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("promtool"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_rendered_rules_pass_promtool_check(rendered, tmp_path):
    rules = write_rule_file(rendered, tmp_path)
    result = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_every_alert_has_a_unit_test():
    (rule,) = [d for d in yaml.safe_load_all((REPO / "k8s/base/prometheusrule.yaml").read_text())]
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    tests = [case for path in (UNIT_TESTS, WEEKLY_UNIT_TESTS)
             for case in yaml.safe_load(path.read_text())["tests"]]
    tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])
              if t.get("exp_alerts")}
    assert alerts == tested


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say(rendered, tmp_path):
    write_rule_file(rendered, tmp_path)
    for path in (UNIT_TESTS, WEEKLY_UNIT_TESTS):
        shutil.copy(path, tmp_path / path.name)
    result = promtool("test", "rules", UNIT_TESTS.name, WEEKLY_UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_tests_catch_rules_that_count_probes(rendered, tmp_path):
    """The unit tests can fail: recording rules that count every route miss the error rate."""
    write_rule_file(rendered, tmp_path, lambda expr: expr.replace('route="classify",', "")
                    .replace('{route="classify"}', ""))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "ModerationHighErrorRate" in result.stdout + result.stderr
