"""What a cluster would do with the rendered manifests: the pod can start, the canary weights are
shares of requests, Prometheus selects the monitors, Argo CD keeps what the stable pods read,
and the review UI deploys with its token from a Secret."""

from __future__ import annotations

import hashlib
import re

import pytest
import yaml

from pipelines.deploy.crds import validate_custom_resource
from pipelines.deploy.pins import VARIANTS, overlays
from pipelines.deploy.policy import (
    IMAGE_UID,
    MIN_KUBERNETES_VERSION,
    PROMETHEUS_SELECTOR,
    Manifests,
)
from tests.k8s.conftest import REPO

TARGETS = [*overlays(REPO), *VARIANTS]
ARGO_TARGETS = [t for t in TARGETS if t != "production-flagger"]


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


@pytest.mark.parametrize("target", TARGETS)
def test_bentoml_home_of_every_bento_container_is_in_an_emptydir(rendered, target):
    for workload in workloads(rendered[target]):
        pod = workload["spec"]["template"]["spec"]
        emptydirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for c in pod["containers"]:
            if c.get("command"):  # not the image's `bentoml serve`
                continue
            env = {v["name"]: v.get("value") for v in c.get("env", [])}
            mounts = [m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] in emptydirs]
            assert "BENTOML_HOME" in env, (target, workload["metadata"]["name"])
            assert any(env["BENTOML_HOME"].startswith(m.rstrip("/") + "/") for m in mounts)


def test_the_image_user_is_the_one_bentoml_containerize_creates():
    from bentoml._internal.container.generate import BENTO_UID_GID

    assert IMAGE_UID == BENTO_UID_GID


@pytest.mark.parametrize("target", TARGETS)
def test_pods_run_as_the_image_user(rendered, target):
    for workload in workloads(rendered[target]):
        sc = workload["spec"]["template"]["spec"]["securityContext"]
        assert (sc["runAsUser"], sc["runAsGroup"], sc["fsGroup"]) == (IMAGE_UID,) * 3, target


def test_docs_state_the_kubernetes_version_prestop_sleep_needs():
    text = (REPO / "docs/deployment.md").read_text()
    assert f"Kubernetes {MIN_KUBERNETES_VERSION} or newer" in text


@pytest.mark.parametrize("target", ARGO_TARGETS)
def test_canary_weights_are_request_shares_set_through_the_gateway_api(rendered, target):
    docs = Manifests(rendered[target])
    rollout = docs.get("Rollout", "moderation")
    canary = rollout["spec"]["strategy"]["canary"]
    plugin = canary["trafficRouting"]["plugins"]["argoproj-labs/gatewayAPI"]
    assert plugin["namespace"] == rollout["metadata"]["namespace"]
    route = docs.get("HTTPRoute", plugin["httpRoute"])
    (rule,) = route["spec"]["rules"]
    assert [b["name"] for b in rule["backendRefs"]] == [canary["stableService"],
                                                        canary["canaryService"]]
    # the weights belong to the plugin; git carries none that a sync would reset
    assert all("weight" not in b for b in rule["backendRefs"])


@pytest.mark.parametrize("env", ["staging", "production"])
def test_argocd_leaves_the_route_weights_to_argo_rollouts(env):
    app = yaml.safe_load((REPO / f"k8s/argocd/{env}.yaml").read_text())
    ignored = {d["kind"]: d for d in app["spec"]["ignoreDifferences"]}
    assert ignored["HTTPRoute"]["jsonPointers"] == [
        "/spec/rules/0/backendRefs/0/weight", "/spec/rules/0/backendRefs/1/weight"]


@pytest.mark.parametrize("target", TARGETS)
def test_kube_prometheus_stack_selects_every_monitor_and_rule(rendered, target):
    monitors = Manifests(rendered[target]).of_kind("ServiceMonitor", "PodMonitor",
                                                   "PrometheusRule")
    assert monitors
    for doc in monitors:
        assert PROMETHEUS_SELECTOR.items() <= doc["metadata"]["labels"].items(), doc["kind"]


@pytest.mark.parametrize("target", TARGETS)
def test_argocd_never_prunes_a_hashed_configmap_or_secret_the_pods_read(rendered, target):
    hashed = [d for d in rendered[target] if d["kind"] in ("ConfigMap", "Secret")
              and re.search(r"-[a-z0-9]{10}$", d["metadata"]["name"])]
    assert hashed
    for doc in hashed:
        assert doc["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == \
            "Prune=false", doc["metadata"]["name"]


def test_service_metric_labels_never_clash_with_prometheus_target_labels():
    from service.metrics import TARGET_LABELS, service_metrics

    metrics = service_metrics()
    labels = {name: set(getattr(metrics, name)._labelnames)
              for name in metrics.__dataclass_fields__}
    assert {name: used & TARGET_LABELS for name, used in labels.items() if used & TARGET_LABELS} \
        == {}
    assert labels["requests"] == {"route", "code"}


def test_review_ui_deploys_with_its_token_from_a_secret_behind_a_network_policy(rendered):
    docs = Manifests(rendered["production+review"])
    pod = docs.get("Deployment", "moderation-review")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == docs.get("Deployment", "moderation")["spec"]["template"]["spec"][
        "containers"][0]["image"]
    env = {v["name"]: v for v in c["env"]}
    assert env["MODERATION_REVIEW_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "moderation-review", "key": "token"}
    assert "value" not in env["MODERATION_REVIEW_TOKEN"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    policy = docs.get("NetworkPolicy", "moderation-review")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "review"}
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": c["ports"][0]["containerPort"], "protocol": "TCP"}]
    assert rule["from"] == [docs.get("NetworkPolicy", "moderation")["spec"]["ingress"][0][
        "from"][0]]
    service = docs.get("Service", "moderation-review")["spec"]
    labels = docs.get("Deployment", "moderation-review")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "http"


def test_bento_carries_the_review_ui_the_review_pod_runs():
    spec = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    included = {p.relative_to(REPO).as_posix() for pattern in spec["include"]
                for p in REPO.glob(pattern)}
    assert {"service/review/__main__.py", "service/review/app.py",
            "service/review/static/index.html"} <= included


# ---------------------------------------------------------------------------------------------
# Custom resources against their CRDs


@pytest.mark.parametrize("target", TARGETS)
def test_every_custom_resource_is_valid_against_its_vendored_crd(rendered, target):
    checked = 0
    for doc in rendered[target]:
        if doc["kind"] in ("Rollout", "AnalysisTemplate", "HTTPRoute", "Canary", "MetricTemplate",
                           "ServiceMonitor", "PodMonitor", "PrometheusRule"):
            assert validate_custom_resource(doc, REPO) == [], doc["kind"]
            checked += 1
    assert checked >= 3


def test_argocd_applications_are_valid_against_the_application_crd():
    for env in ("staging", "production"):
        app = yaml.safe_load((REPO / f"k8s/argocd/{env}.yaml").read_text())
        assert validate_custom_resource(app, REPO) == []


def test_vendored_crds_are_the_upstream_files_named_in_source_md():
    source = (REPO / "k8s/crds/SOURCE.md").read_text()
    listed = dict(re.findall(r"^([0-9a-f]{64})  (\S+)$", source, re.M))
    files = {p.relative_to(REPO / "k8s/crds").as_posix(): p
             for p in (REPO / "k8s/crds").rglob("*.yaml")}
    assert sorted(listed.values()) == sorted(files)
    for digest, rel in listed.items():
        assert hashlib.sha256(files[rel].read_bytes()).hexdigest() == digest, rel
    assert "Apache-2.0" in source
