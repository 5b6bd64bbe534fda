"""The platform the canary needs is carried as code (k8s/platform): upstream files unmodified,
the Gateway API plugin registered and allowed to change HTTPRoutes, the CRDs the overlays are
validated against are the ones it installs, and the environments' routes never collide."""

from __future__ import annotations

import copy
import hashlib
import re

import pytest
import yaml

from pipelines.deploy.crds import crd_documents, validate_custom_resource
from pipelines.deploy.kustomize import parse, render
from pipelines.deploy.pins import environment_of, overlays
from pipelines.deploy.platform import (
    PLUGIN_ACCESS,
    ROLLOUTS_SERVICE_ACCOUNT,
    allowed,
    platform_findings,
    render_platform,
    route_findings,
    route_keys,
)
from pipelines.deploy.policy import Manifests, schema_findings
from tests.k8s.conftest import REPO

PLATFORM = REPO / "k8s/platform"


@pytest.fixture(scope="module")
def platform() -> list[dict]:
    return render_platform(REPO)


def gateways(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] == "Gateway"]


def yaml_blocks(markdown: str) -> list[list[dict]]:
    """The YAML code blocks of a markdown text that parse on their own (fragments skipped)."""
    blocks = []
    for block in re.findall(r"```yaml\n(.*?)```", markdown, re.S):
        try:
            blocks.append([d for d in yaml.safe_load_all(block) if d])
        except yaml.YAMLError:
            continue
    return blocks


def test_upstream_files_are_byte_for_byte_those_named_in_source_md():
    source = (PLATFORM / "SOURCE.md").read_text()
    listed = dict(re.findall(r"^([0-9a-f]{64})  (\S+)$", source, re.M))
    assert sorted(listed.values()) == sorted([
        "argo-rollouts/install.yaml", "argo-rollouts/gatewayapi-plugin-installation.md",
        "argo-rollouts/gatewayapi-plugin-quick-start.md", "gateway-api/gatewayclasses-crd.yaml",
        "gateway-api/gateways-crd.yaml", "gateway-api/httproutes-crd.yaml",
        "gateway-api/referencegrants-crd.yaml"])
    for digest, rel in listed.items():
        assert hashlib.sha256((PLATFORM / rel).read_bytes()).hexdigest() == digest, rel
    assert "v1.9.1" in source and "v1.4.1" in source and "v0.9.0" in source


def test_plugin_rbac_is_the_block_of_the_plugins_quick_start():
    docs = (PLATFORM / "argo-rollouts/gatewayapi-plugin-quick-start.md").read_text()
    ours = [d for d in yaml.safe_load_all(
        (PLATFORM / "argo-rollouts/gatewayapi-plugin-rbac.yaml").read_text()) if d]
    assert ours in yaml_blocks(docs)


def test_plugin_config_is_the_installation_docs_configmap_at_the_plugin_release():
    docs = (PLATFORM / "argo-rollouts/gatewayapi-plugin-installation.md").read_text()
    (ours,) = yaml.safe_load_all((PLATFORM / "argo-rollouts/gatewayapi-plugin.yaml").read_text())
    (template,) = yaml_blocks(docs)[0]
    plugins = yaml.safe_load(ours["data"]["trafficRouterPlugins"])
    documented = yaml.safe_load(template["data"]["trafficRouterPlugins"])
    assert {k: v for k, v in ours.items() if k != "data"} == \
        {k: v for k, v in template.items() if k != "data"}
    assert [p["name"] for p in plugins] == [p["name"] for p in documented] == [
        "argoproj-labs/gatewayAPI"]
    assert plugins[0]["location"] == documented[0]["location"].replace(
        "<version>", "v0.9.0").replace("<arch>", "linux-amd64")


def test_rendered_platform_registers_the_plugin_and_pins_the_controller(platform):
    config = Manifests(platform).get("ConfigMap", "argo-rollouts-config")
    assert config["metadata"]["namespace"] == "argo-rollouts"
    assert "argoproj-labs/gatewayAPI" in config["data"]["trafficRouterPlugins"]
    controller = Manifests(platform).get("Deployment", "argo-rollouts")
    assert controller["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "quay.io/argoproj/argo-rollouts:v1.9.1"
    assert list(platform_findings(platform)) == []


@pytest.mark.parametrize("verb", ["get", "update", "patch"])
def test_rollouts_controller_may_change_httproutes_by_the_rendered_rbac(platform, verb):
    assert allowed(platform, ROLLOUTS_SERVICE_ACCOUNT, "gateway.networking.k8s.io",
                   "httproutes", verb)
    # nothing else grants it: install.yaml's own ClusterRole has no gateway.networking.k8s.io
    upstream = parse(render(PLATFORM / "argo-rollouts"))
    without_plugin_rbac = [d for d in upstream if d["metadata"]["name"] not in (
        "gateway-controller-role", "gateway-admin")]
    assert not allowed(without_plugin_rbac, ROLLOUTS_SERVICE_ACCOUNT,
                       "gateway.networking.k8s.io", "httproutes", verb)


def test_removing_the_httproutes_rule_is_reported(k8s_copy):
    path = k8s_copy / "k8s/platform/argo-rollouts/gatewayapi-plugin-rbac.yaml"
    path.write_text(path.read_text().replace("      - httproutes\n", "      - gateways\n"))
    docs = render_platform(k8s_copy)
    messages = [f.message for f in platform_findings(docs)]
    assert len(messages) == len(PLUGIN_ACCESS[0][2])
    assert all("may not" in m and "httproutes" in m for m in messages)


def test_platform_built_ins_pass_kubernetes_validate(platform):
    assert schema_findings({"platform": platform}) == []


def test_rollouts_are_validated_against_the_crds_the_platform_installs():
    sources = {(d["spec"]["group"], d["spec"]["names"]["kind"]): source
               for source, d in crd_documents(REPO)}
    for kind in ("Rollout", "AnalysisTemplate", "AnalysisRun"):
        assert sources["argoproj.io", kind] == "kubectl kustomize k8s/platform", kind
    for kind in ("HTTPRoute", "Gateway", "GatewayClass", "ReferenceGrant"):
        assert sources["gateway.networking.k8s.io", kind] == "kubectl kustomize k8s/platform"
    assert not (REPO / "k8s/crds/argo-rollouts").exists()


def test_httproute_and_gateway_are_schema_checked(rendered, platform):
    route = copy.deepcopy(Manifests(rendered["production"]).get("HTTPRoute", "moderation"))
    gateway = copy.deepcopy(gateways(platform)[0])
    assert validate_custom_resource(route, REPO) == []
    assert validate_custom_resource(gateway, REPO) == []
    route["spec"]["rules"][0]["backendRefs"][0]["weigth"] = 5
    gateway["spec"]["listeners"][0]["protocol"] = "HTTP"
    gateway["spec"]["listeners"][0]["port"] = 70000
    assert any("weigth" in p for p in validate_custom_resource(route, REPO))
    assert any("listeners.0.port" in p for p in validate_custom_resource(gateway, REPO))


def test_docs_say_how_to_install_what_the_platform_does_not_carry():
    text = (REPO / "docs/deployment.md").read_text()
    assert "kubectl apply --server-side -k k8s/platform" in text
    assert "metrics-server" in text and "components.yaml" in text


# ---------------------------------------------------------------------------------------------
# Routes of the environments


def test_no_two_environments_claim_the_same_requests(rendered, platform):
    assert route_findings(rendered, gateways(platform), environment_of) == []
    claims = {}
    for target in overlays(REPO):
        for route in Manifests(rendered[target]).of_kind("HTTPRoute"):
            claims[target] = set(route_keys(route, gateways(platform)))
    assert claims["staging"] and claims["production"]
    assert claims["staging"].isdisjoint(claims["production"])
    listeners = {key[2] for keys in claims.values() for key in keys}
    assert listeners == {"staging", "production"}


def test_routes_without_hostname_and_listener_collide_across_environments(rendered, platform):
    """The routes of main before this change: same Gateway, no hostnames, no sectionName."""
    stripped = {}
    for target in ("staging", "production"):
        docs = copy.deepcopy(rendered[target])
        route = Manifests(docs).get("HTTPRoute", "moderation")
        del route["spec"]["hostnames"]
        del route["spec"]["parentRefs"][0]["sectionName"]
        stripped[target] = docs
    messages = [f.message for f in route_findings(stripped, gateways(platform))]
    assert any("staging:HTTPRoute/moderation" in m and "production:HTTPRoute/moderation" in m
               for m in messages), messages
    assert any("names no sectionName" in m for m in messages)


def test_a_route_in_the_other_environments_listener_is_not_admitted(rendered, platform):
    docs = copy.deepcopy(rendered["staging"])
    route = Manifests(docs).get("HTTPRoute", "moderation")
    route["spec"]["parentRefs"][0]["sectionName"] = "production"
    messages = [f.message for f in route_findings({"staging": docs}, gateways(platform))]
    assert any("does not admit exactly namespace moderation-staging" in m for m in messages)
    assert any("does not match listener production" in m for m in messages)
