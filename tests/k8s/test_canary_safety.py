"""A first canary in a real cluster: a crashing canary is aborted and never blocks a drain, the
rollout never needs twice the pods, every shutdown fits its grace period, only the Gateway and
Prometheus reach the pods, the review UI has a route, and the docs count failures as Argo
Rollouts does."""

from __future__ import annotations

import copy
import inspect
import math
import re

import pytest

from pipelines.deploy.pins import VARIANTS, overlays
from pipelines.deploy.policy import (
    LOG_FLUSH_BOUND_S,
    SHUTDOWN_MARGIN_S,
    Manifests,
    policy_findings,
    shutdown_budget,
)
from tests.k8s.conftest import REPO

ARGO_TARGETS = [t for t in [*overlays(REPO), *VARIANTS] if t != "production-flagger"]
TEMPLATE = "moderation-canary-health"


def canary(rendered, target) -> dict:
    return Manifests(rendered[target]).get("Rollout", "moderation")["spec"]


def metrics(rendered, target="production") -> dict[str, dict]:
    template = Manifests(rendered[target]).get("AnalysisTemplate", TEMPLATE)
    return {m["name"]: m for m in template["spec"]["metrics"]}


def seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


@pytest.mark.parametrize("target", ARGO_TARGETS)
def test_a_canary_that_never_becomes_available_is_aborted(rendered, target):
    spec = canary(rendered, target)
    assert spec["progressDeadlineAbort"] is True
    probe = Manifests(rendered[target]).get("Deployment", "moderation")["spec"]["template"][
        "spec"]["containers"][0]["startupProbe"]
    # longer than the pod may legitimately take to start, else slow nodes abort healthy canaries
    assert spec["progressDeadlineSeconds"] > probe["periodSeconds"] * probe["failureThreshold"]


@pytest.mark.parametrize("target", ["staging", "production"])
def test_unready_pods_never_block_a_node_drain(rendered, target):
    pdb = Manifests(rendered[target]).get("PodDisruptionBudget", "moderation")["spec"]
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_the_rollout_never_runs_twice_the_pods(rendered):
    """dynamicStableScale: at each weight w stable keeps ceil(N (1-w)), the canary ceil(N w)."""
    spec = canary(rendered, "production")["strategy"]["canary"]
    assert spec["dynamicStableScale"] is True
    most = Manifests(rendered["production"]).get("HorizontalPodAutoscaler", "moderation")[
        "spec"]["maxReplicas"]
    weights = [s["setWeight"] / 100 for s in spec["steps"] if "setWeight" in s]
    peak = max(math.ceil(most * w) + math.ceil(most * (1 - w)) for w in weights)
    assert peak <= most + 1  # without it: 2 * most at setWeight 100


def test_the_log_flush_bound_is_the_prediction_logs_close_timeout():
    from service.predlog import PredictionLog

    assert inspect.signature(PredictionLog.close).parameters["timeout"].default == \
        LOG_FLUSH_BOUND_S


@pytest.mark.parametrize("target", ["staging", "production", "production+shadow"])
def test_every_serving_pods_shutdown_fits_its_grace_period(rendered, target):
    docs = Manifests(rendered[target])
    checked = 0
    for workload in docs.of_kind("Deployment"):
        pod = workload["spec"]["template"]["spec"]
        for c in pod["containers"]:
            budget = shutdown_budget(c, pod, docs)
            if budget:
                assert budget[0] <= pod["terminationGracePeriodSeconds"], budget[1]
                assert budget[0] >= LOG_FLUSH_BOUND_S + SHUTDOWN_MARGIN_S
                checked += 1
    assert checked >= 1


def test_a_longer_drain_without_a_longer_grace_period_is_refused(rendered):
    docs = copy.deepcopy(rendered["production"])
    settings = next(d for d in docs if d["kind"] == "ConfigMap"
                    and d["metadata"]["name"].startswith("moderation-settings-"))
    settings["data"]["MODERATION_DRAIN_TIMEOUT_S"] = "45"
    messages = [f.message for f in policy_findings("production", docs)]
    assert any("shorter than its shutdown" in m and "MODERATION_DRAIN_TIMEOUT_S 45" in m
               for m in messages), messages


@pytest.mark.parametrize("target", ["production", "production+review", "production+shadow"])
def test_pods_run_as_the_account_that_carries_the_registry_pull_secret(rendered, target):
    docs = Manifests(rendered[target])
    account = docs.get("ServiceAccount", "moderation")
    assert account["imagePullSecrets"] == [{"name": "moderation-registry"}]
    for workload in docs.of_kind("Deployment"):
        assert workload["spec"]["template"]["spec"]["serviceAccountName"] == "moderation"


def proxies_peer() -> dict:
    import yaml

    doc = yaml.safe_load((REPO / "k8s/components/gateway-proxies/gateway-proxies.yaml")
                         .read_text())
    return doc["spec"]


@pytest.mark.parametrize("target", ["staging", "production"])
def test_only_the_gateways_proxies_and_prometheus_reach_port_3000(rendered, target):
    policy = Manifests(rendered[target]).get("NetworkPolicy", "moderation")["spec"]
    (rule,) = policy["ingress"]
    peers = proxies_peer()
    assert rule["from"] == [peers["proxies"], peers["prometheus"]]
    assert rule["ports"] == [{"port": 3000, "protocol": "TCP"}]
    for peer in rule["from"]:  # never "every pod in the cluster"
        assert peer["namespaceSelector"]["matchLabels"] and peer["podSelector"]["matchLabels"]


def test_the_review_ui_has_its_own_route_and_admits_only_the_gateways_proxies(rendered):
    docs = Manifests(rendered["production+review"])
    route = docs.get("HTTPRoute", "moderation-review")
    assert route["spec"]["hostnames"] == ["review.moderation.example.org"]
    assert route["spec"]["parentRefs"][0]["sectionName"] == "production"
    (rule,) = route["spec"]["rules"]
    service = docs.get("Service", "moderation-review")
    assert rule["backendRefs"] == [{"name": "moderation-review", "kind": "Service",
                                    "port": service["spec"]["ports"][0]["port"]}]
    policy = docs.get("NetworkPolicy", "moderation-review")["spec"]
    assert policy["ingress"][0]["from"] == [proxies_peer()["proxies"]]


# ---------------------------------------------------------------------------------------------
# Windows, intervals and failure counts


def test_no_minute_is_measured_twice(rendered):
    """Each metric's windows equal its interval, except the label share, whose window is the
    canary's whole life (it is one cumulative test, not a series of samples)."""
    rollout_s = sum(seconds(s["pause"]["duration"]) for s in canary(
        rendered, "production")["strategy"]["canary"]["steps"] if "pause" in s)
    for name, metric in metrics(rendered).items():
        windows = {seconds(w) for w in re.findall(r"\[(\d+[smh])\]",
                                                   metric["provider"]["prometheus"]["query"])}
        if name == "label-share-shift":
            assert min(windows) >= rollout_s, name
        else:
            assert windows == {seconds(metric["interval"])}, name


def test_the_docs_say_at_which_failure_each_metric_aborts(rendered):
    """Argo Rollouts fails a metric when its failures exceed failureLimit: the abort comes at
    failure failureLimit + 1."""
    text = (REPO / "docs/deployment.md").read_text()
    ordinal = {1: "first", 2: "second", 3: "third"}
    for name, metric in metrics(rendered).items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")),
                   None)
        assert row is not None, f"docs/deployment.md has no row for {name}"
        assert f"at the {ordinal[metric['failureLimit'] + 1]} failing" in row, row
        assert f"every {metric['interval']}" in row, row
