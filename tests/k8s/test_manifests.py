"""Every overlay (and the shadow / Flagger variants) renders and satisfies the delivery policy."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from pipelines.deploy.pins import (
    VARIANTS,
    application_findings,
    overlays,
    read_pin,
    service_image,
)
from pipelines.deploy.policy import (
    CANARY_SIGNALS,
    CONTRACT_METRICS,
    Manifests,
    metric_names,
    policy_findings,
    promql_expressions,
)
from tests.k8s.conftest import REPO

TARGETS = [*overlays(REPO), *VARIANTS]
ARGO_TARGETS = [t for t in TARGETS if t != "production-flagger"]


def canary_policy() -> dict:
    path = REPO / "k8s/components/canary-policy/canary-policy.yaml"
    return yaml.safe_load(path.read_text())["spec"]


def canary_pause() -> str:
    return canary_policy()["pause"]


def one(rendered, target, kind, name):
    doc = Manifests(rendered[target]).get(kind, name)
    assert doc is not None, f"{target}: {kind}/{name} not rendered"
    return doc


def test_staging_and_production_overlays_exist_and_render(rendered):
    assert {"staging", "production"} <= set(overlays(REPO))
    for target in TARGETS:
        kinds = {d["kind"] for d in rendered[target]}
        assert {"Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap",
                "NetworkPolicy", "PrometheusRule"} <= kinds, target


def test_built_in_kinds_pass_kubernetes_validate_strict(schema_result):
    assert schema_result == []


@pytest.mark.parametrize("target", TARGETS)
def test_delivery_policy_holds(rendered, target):
    assert [str(f) for f in policy_findings(target, rendered[target])] == []


@pytest.mark.parametrize("target", ARGO_TARGETS)
def test_rollout_shifts_10_20_30_100_with_the_pauses_from_canary_policy(rendered, target):
    steps = one(rendered, target, "Rollout", "moderation")["spec"]["strategy"]["canary"]["steps"]
    assert [s["setWeight"] for s in steps if "setWeight" in s] == [10, 20, 30, 100]
    assert [s["pause"]["duration"] for s in steps if "pause" in s] == [
        canary_pause(), canary_pause(), canary_policy()["finalPause"]]


def test_pause_duration_is_written_once_in_the_components(rendered):
    mentions = [p for p in (REPO / "k8s").rglob("*.yaml")
                if re.search(r"duration:\s*\d", p.read_text()) or
                re.search(r"^\s*pause:\s*\d", p.read_text(), re.M)]
    assert [p.relative_to(REPO).as_posix() for p in mentions] == [
        "k8s/components/canary-policy/canary-policy.yaml"]


def test_flagger_variant_applies_the_same_weights_and_pause(rendered):
    analysis = one(rendered, "production-flagger", "Canary", "moderation")["spec"]["analysis"]
    assert analysis["stepWeights"] == [10, 20, 30]
    assert analysis["interval"] == canary_pause()
    kinds = {d["kind"] for d in rendered["production-flagger"]}
    assert "Rollout" not in kinds and "MetricTemplate" in kinds


@pytest.mark.parametrize("target", ARGO_TARGETS)
def test_failed_analysis_is_wired_to_the_rollout(rendered, target):
    canary = one(rendered, target, "Rollout", "moderation")["spec"]["strategy"]["canary"]
    assert canary["analysis"]["templates"] == [{"templateName": "moderation-canary-health"}]
    assert canary["stableService"] == "moderation-stable"
    assert canary["canaryService"] == "moderation-canary"
    template = one(rendered, target, "AnalysisTemplate", "moderation-canary-health")
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    assert set(metrics) == {"success-rate", "p95-latency", "canary-traffic", "label-share-shift"}
    for metric in metrics.values():
        assert metric["failureLimit"] >= 0 and "failureCondition" in metric


def test_analysis_alerts_and_dashboard_query_only_contract_metrics(rendered):
    docs = Manifests(rendered["production"])
    used: dict[str, set[str]] = {}
    for rid, expr in promql_expressions(docs):
        used.setdefault(rid.split(" ")[0], set()).update(metric_names(expr))
    assert set().union(*used.values()) <= CONTRACT_METRICS
    assert set(CANARY_SIGNALS) <= used["AnalysisTemplate/moderation-canary-health"]
    assert set(CANARY_SIGNALS) <= used["PrometheusRule/moderation"]
    assert used["ConfigMap/moderation-dashboard"] == CONTRACT_METRICS


def test_positive_label_in_queries_is_the_last_label_of_params():
    positive = yaml.safe_load((REPO / "params.yaml").read_text())["data"]["labels"][-1]
    template = yaml.safe_load(
        (REPO / "k8s/components/rollout-argo/analysistemplate.yaml").read_text())
    args = {a["name"]: a.get("value") for a in template["spec"]["args"]}
    assert args["positive-label"] == positive
    for path in ("k8s/base/prometheusrule.yaml", "k8s/components/flagger/metrictemplates.yaml"):
        assert set(re.findall(r'label="([^"{]+)"', (REPO / path).read_text())) == {positive}


def test_dashboard_is_a_grafana_configmap_with_a_panel_per_metric(rendered):
    cm = one(rendered, "production", "ConfigMap", "moderation-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["moderation.json"])
    assert dashboard["uid"] == "moderation-service" and len(dashboard["panels"]) >= 10


@pytest.mark.parametrize("env", ["staging", "production"])
def test_environment_runs_exactly_the_pinned_image(rendered, env):
    pin = read_pin(env, REPO)
    assert pin.name == service_image(REPO) and pin.tag and pin.tag != "latest"
    deployment = one(rendered, env, "Deployment", "moderation")
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert images == [pin.reference]


@pytest.mark.parametrize("env", ["staging", "production"])
def test_serving_pod_follows_the_service_contract(rendered, env):
    deployment = one(rendered, env, "Deployment", "moderation")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["port"] == "http"
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["terminationGracePeriodSeconds"] > container["lifecycle"]["preStop"]["sleep"][
        "seconds"]
    env_vars = {v["name"]: v for v in container["env"]}
    assert env_vars["MODERATION_DB_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "moderation-db" if env == "production" else
        next(d["metadata"]["name"] for d in rendered[env] if d["kind"] == "Secret"),
        "key": "url"}
    settings_name = container["envFrom"][0]["configMapRef"]["name"]
    settings = one(rendered, env, "ConfigMap", settings_name)["data"]
    assert all(key.startswith("MODERATION_") for key in settings)
    assert settings["MODERATION_SHADOW_URL"] == ""


@pytest.mark.parametrize("target", ARGO_TARGETS)
def test_autoscaler_scales_the_rollout(rendered, target):
    hpa = one(rendered, target, "HorizontalPodAutoscaler", "moderation")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                                     "name": "moderation"}
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]


def test_shadow_variant_sends_copies_to_a_pinned_shadow_service(rendered):
    docs = Manifests(rendered["production+shadow"])
    primary = docs.get("Deployment", "moderation")["spec"]["template"]["spec"]["containers"][0]
    settings = docs.get("ConfigMap", primary["envFrom"][0]["configMapRef"]["name"])["data"]
    assert settings["MODERATION_SHADOW_URL"] == "http://moderation-shadow:3000"
    shadow = docs.get("Deployment", "moderation-shadow")["spec"]["template"]["spec"]
    (container,) = shadow["containers"]
    assert container["image"] == read_pin("production", REPO).reference
    assert {"name": "MODERATION_SHADOW_URL", "value": ""} in container["env"]
    assert docs.get("ConfigMap", container["envFrom"][0]["configMapRef"]["name"]) is not None
    service = docs.get("Service", "moderation-shadow")["spec"]
    assert service["ports"][0]["port"] == 3000


def test_argocd_applications_sync_each_overlay_into_its_namespace():
    assert application_findings(REPO) == []
    apps = yaml.safe_load_all((REPO / "k8s/argocd/production.yaml").read_text())
    (app,) = list(apps)
    assert app["spec"]["source"]["path"] == "k8s/overlays/production"
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
