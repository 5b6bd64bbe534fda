"""The Argo CD Applications as rendered: a sync mid-canary keeps the route weights Argo Rollouts
set, the kept old settings never leave an Application OutOfSync, and the cleanup of those old
copies removes only what no ReplicaSet reads."""

from __future__ import annotations

import copy

import pytest

from pipelines.deploy.kustomize import parse, render
from pipelines.deploy.policy import Manifests
from pipelines.deploy.rollout import stale_generated_config
from tests.k8s.argocd import ignored_pointers, sync
from tests.k8s.conftest import REPO

ENVS = ["staging", "production"]


@pytest.fixture(scope="module")
def apps() -> dict[str, dict]:
    docs = parse(render(REPO / "k8s/argocd"))
    return {d["spec"]["source"]["path"].rsplit("/", 1)[1]: d for d in docs}


def mid_canary(route: dict, canary_weight: int) -> dict:
    """The route as the Gateway API plugin leaves it at a step: stable 100-w, canary w."""
    live = copy.deepcopy(route)
    stable, canary = live["spec"]["rules"][0]["backendRefs"]
    stable["weight"], canary["weight"] = 100 - canary_weight, canary_weight
    live["status"] = {"parents": []}
    return live


def weights(route: dict) -> list[int]:
    return [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]]


@pytest.mark.parametrize("env", ENVS)
def test_a_sync_mid_canary_keeps_the_weights_argo_rollouts_set(apps, rendered, env):
    route = Manifests(rendered[env]).get("HTTPRoute", "moderation")
    for weight in (10, 20, 30):
        assert weights(sync(apps[env], mid_canary(route, weight), route)) == [100 - weight, weight]


@pytest.mark.parametrize("env", ENVS)
def test_without_respect_ignore_differences_the_sync_resets_the_weights_to_one_to_one(
        apps, rendered, env):
    """What the Applications of main did: ignoreDifferences only hid the diff."""
    app = copy.deepcopy(apps[env])
    app["spec"]["syncPolicy"]["syncOptions"].remove("RespectIgnoreDifferences=true")
    route = Manifests(rendered[env]).get("HTTPRoute", "moderation")
    assert weights(sync(app, mid_canary(route, 10), route)) == [1, 1]


@pytest.mark.parametrize("env", ENVS)
def test_the_applications_ignore_every_weight_of_the_rendered_route_and_nothing_else(
        apps, rendered, env):
    route = Manifests(rendered[env]).get("HTTPRoute", "moderation")
    backends = [(i, j) for i, rule in enumerate(route["spec"]["rules"])
                for j, _ in enumerate(rule["backendRefs"])]
    assert sorted(ignored_pointers(apps[env], route)) == sorted(
        f"/spec/rules/{i}/backendRefs/{j}/weight" for i, j in backends)
    options = apps[env]["spec"]["syncPolicy"]["syncOptions"]
    assert "RespectIgnoreDifferences=true" in options
    # the plugin's plain updates would conflict with server-side apply on every sync
    assert "ServerSideApply=true" not in options
    assert apps[env]["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


@pytest.mark.parametrize("env", ENVS)
def test_kept_settings_never_leave_the_application_out_of_sync(rendered, env):
    hashed = [d for d in rendered[env] if d["kind"] in ("ConfigMap", "Secret")
              and d["metadata"]["name"].startswith("moderation-settings-")]
    assert hashed
    for doc in hashed:
        annotations = doc["metadata"]["annotations"]
        assert annotations["argocd.argoproj.io/sync-options"] == "Prune=false"
        assert annotations["argocd.argoproj.io/compare-options"] == "IgnoreExtraneous"


def test_prune_config_deletes_only_generated_config_nothing_references(rendered):
    docs = rendered["staging"]
    current = Manifests(docs).get("ConfigMap", next(
        d["metadata"]["name"] for d in docs if d["metadata"]["name"].startswith(
            "moderation-settings-")))
    template = Manifests(docs).get("Deployment", "moderation")

    def old(name: str, kind: str = "ConfigMap") -> dict:
        doc = copy.deepcopy(current)
        doc["kind"], doc["metadata"]["name"] = kind, name
        return doc

    def replicaset(settings: str) -> dict:
        rs = copy.deepcopy(template)
        rs["kind"] = "ReplicaSet"
        rs["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"][
            "name"] = settings
        return rs

    unmarked = old("someone-elses-config")
    del unmarked["metadata"]["annotations"]
    live = [current, old("moderation-settings-old1"), old("moderation-settings-old2"),
            old("moderation-db-old3", "Secret"), unmarked, replicaset("moderation-settings-old1")]
    assert stale_generated_config(live, docs) == [("ConfigMap", "moderation-settings-old2"),
                                                   ("Secret", "moderation-db-old3")]
