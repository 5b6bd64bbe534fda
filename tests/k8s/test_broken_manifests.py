"""A broken overlay is caught, and the message names the overlay, the resource and the problem."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.deploy.pins import validate_repository
from tests.k8s.conftest import REPO


def edit(root: Path, rel: str, old: str, new: str, count: int = 1) -> None:
    path = root / "k8s" / rel
    text = path.read_text()
    assert text.count(old) >= count, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, count))


def problems(root: Path) -> list[str]:
    return [str(f) for f in validate_repository(root, progress=lambda _: None)]


def assert_caught(found: list[str], *patterns: str) -> None:
    for pattern in patterns:
        assert any(re.search(pattern, line) for line in found), (pattern, found)


def test_missing_analysis_template_is_named(k8s_copy):
    edit(k8s_copy, "components/rollout-argo/kustomization.yaml", "  - analysistemplate.yaml\n", "")
    assert_caught(problems(k8s_copy),
                  r"^production: Rollout/moderation: references AnalysisTemplate "
                  r"'moderation-canary-health', which is not in the rendered manifests",
                  r"^staging: Rollout/moderation: references AnalysisTemplate")


def test_unpinned_image_is_named(k8s_copy):
    edit(k8s_copy, "overlays/staging/kustomization.yaml",
         "    newTag: transformer-4d4a25b1-0219b906\n", "")
    found = problems(k8s_copy)
    assert_caught(found,
                  r"^staging: kustomization.yaml images: .*give exactly one of a tag or a digest",
                  r"^staging: Deployment/moderation: container moderation: image "
                  r"ghcr.io/example-org/moderation-service is not pinned")
    assert not any(line.startswith("production:") for line in found)


def test_latest_tag_is_refused(k8s_copy):
    edit(k8s_copy, "overlays/production/kustomization.yaml",
         "newTag: transformer-4d4a25b1-0219b906", "newTag: latest")
    assert_caught(problems(k8s_copy),
                  r"^production: kustomization.yaml images: .*latest is never allowed",
                  r"^production: Deployment/moderation: .*uses the tag latest")


def test_second_images_entry_for_the_service_is_refused(k8s_copy):
    edit(k8s_copy, "overlays/production/kustomization.yaml",
         "images:\n", "images:\n  - name: ghcr.io/example-org/moderation-service\n"
         "    newTag: other\n")
    assert_caught(problems(k8s_copy), r"^production: kustomization.yaml images: .*needs exactly "
                                      r"one images: entry .* found 2")


def test_missing_readiness_probe_is_named(k8s_copy):
    edit(k8s_copy, "base/deployment.yaml", "          readinessProbe:\n",
         "          unusedProbe:\n")
    edit(k8s_copy, "base/deployment.yaml", "          unusedProbe:", "          x-removed:")
    path = k8s_copy / "k8s/base/deployment.yaml"
    text = path.read_text()
    # Drop the whole probe block (the renamed key and its indented body).
    path.write_text(re.sub(r"          x-removed:\n(            .*\n)+", "", text))
    assert_caught(problems(k8s_copy),
                  r"^staging: Deployment/moderation: container moderation: no readinessProbe",
                  r"^production: Deployment/moderation: container moderation: no readinessProbe")


def test_unknown_field_fails_the_strict_schema(k8s_copy):
    edit(k8s_copy, "base/deployment.yaml", "          readinessProbe:", "          readinesProbe:")
    assert_caught(problems(k8s_copy),
                  r"^production: deployment/moderation: .*'readinesProbe' was unexpected")


def test_weights_that_do_not_ascend_are_refused(k8s_copy):
    edit(k8s_copy, "components/rollout-argo/rollout.yaml", "setWeight: 30", "setWeight: 15")
    assert_caught(problems(k8s_copy),
                  r"^production: Rollout/moderation: canary weights \[10, 20, 15, 100\] must "
                  r"ascend and end at 100")


def test_pause_without_canary_policy_is_refused(k8s_copy):
    edit(k8s_copy, "components/rollout-argo/kustomization.yaml",
         "components:\n  - ../canary-policy\n", "")
    edit(k8s_copy, "components/rollout-argo/kustomization.yaml", "replacements:", "x-off:")
    path = k8s_copy / "k8s/components/rollout-argo/kustomization.yaml"
    path.write_text(path.read_text().split("x-off:")[0])
    assert_caught(problems(k8s_copy),
                  r"^production: Rollout/moderation: step 1: pause duration "
                  r"'from-canary-policy' is not a duration")


def test_final_hold_shorter_than_the_other_pauses_is_refused(k8s_copy):
    edit(k8s_copy, "components/canary-policy/canary-policy.yaml", "finalPause: 45m",
         "finalPause: 2m")
    assert_caught(problems(k8s_copy),
                  r"^production: Rollout/moderation: the last pause 2m is shorter than the "
                  r"others 5m: components/canary-policy's finalPause")


def test_pdb_that_blocks_evictions_is_refused(k8s_copy):
    edit(k8s_copy, "base/pdb.yaml", "maxUnavailable: 1", "maxUnavailable: 0")
    assert_caught(problems(k8s_copy), r"^staging: PodDisruptionBudget/moderation: "
                                      r"maxUnavailable 0 blocks every eviction")


def test_autoscaler_bounds_upside_down_are_refused(k8s_copy):
    edit(k8s_copy, "overlays/staging/kustomization.yaml", "value: 4", "value: 1")
    assert_caught(problems(k8s_copy), r"^staging: HorizontalPodAutoscaler/moderation: "
                                      r"maxReplicas 1 is below minReplicas 2")


def test_service_selecting_no_pods_is_named(k8s_copy):
    edit(k8s_copy, "components/rollout-argo/services.yaml",
         "    app.kubernetes.io/component: server\n  ports",
         "    app.kubernetes.io/component: canary\n  ports")
    found = problems(k8s_copy)
    assert_caught(found, r"^production: Service/moderation-stable: selector .* selects no pods",
                  r"^production: Rollout/moderation: stableService moderation-stable selects "
                  r"no pods")


def test_metric_outside_the_service_contract_is_named(k8s_copy):
    edit(k8s_copy, "components/rollout-argo/analysistemplate.yaml",
         "sum(rate(moderation_requests_total{", "sum(rate(moderation_request_total{")
    assert_caught(problems(k8s_copy),
                  r"^production: AnalysisTemplate/moderation-canary-health: PromQL uses "
                  r"moderation_request_total, which is not a metric of the service contract")


def test_container_without_security_context_is_named(k8s_copy):
    edit(k8s_copy, "base/deployment.yaml", "readOnlyRootFilesystem: true",
         "readOnlyRootFilesystem: false")
    assert_caught(problems(k8s_copy), r"^production: Deployment/moderation: container "
                                      r"moderation: securityContext.readOnlyRootFilesystem")


def test_application_pointing_nowhere_is_named(k8s_copy):
    edit(k8s_copy, "argocd/staging.yaml", "path: k8s/overlays/staging", "path: k8s/overlays/stage")
    assert_caught(problems(k8s_copy), r"^argocd: Application/moderation-staging: source.path "
                                      r"k8s/overlays/stage is not a kustomization")


def test_kustomization_that_cannot_render_is_reported(k8s_copy):
    edit(k8s_copy, "base/kustomization.yaml", "  - pdb.yaml\n", "  - pdb-missing.yaml\n")
    assert_caught(problems(k8s_copy), r"^production: kustomize: kubectl kustomize .* failed: "
                                      r".*pdb-missing.yaml")


def test_make_target_command_exits_non_zero_naming_the_problem(k8s_copy):
    edit(k8s_copy, "components/rollout-argo/kustomization.yaml", "  - analysistemplate.yaml\n", "")
    proc = subprocess.run([sys.executable, "-m", "pipelines", "deploy", "validate"],
                          cwd=k8s_copy, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1
    assert "references AnalysisTemplate 'moderation-canary-health'" in proc.stderr
    assert "problem(s) in k8s/" in proc.stderr


def test_rendering_uses_the_virtualenv_kubectl_only(monkeypatch, tmp_path):
    from pipelines.deploy import kustomize
    assert kustomize.venv_tool("kubectl") == Path(sys.prefix) / "bin" / "kubectl"
    monkeypatch.setattr(kustomize.sys, "prefix", str(tmp_path))
    with pytest.raises(kustomize.ManifestError, match=r"kubectl not found in the virtualenv.*"
                                                     r"make venv"):
        kustomize.render(REPO / "k8s/overlays/staging")


def test_misspelt_field_of_a_custom_resource_fails_its_crd_schema(k8s_copy):
    edit(k8s_copy, "components/rollout-argo/rollout.yaml", "      maxSurge: 25%",
         "      maxSurg: 25%")
    assert_caught(problems(k8s_copy),
                  r"^production: Rollout/moderation: CRD schema: spec.strategy.canary: unknown "
                  r"field\(s\) 'maxSurg'")


def test_wrong_type_in_a_custom_resource_fails_its_crd_schema(k8s_copy):
    edit(k8s_copy, "base/servicemonitor.yaml", "      honorLabels: false",
         "      honorLabels: \"no\"")
    edit(k8s_copy, "argocd/production.yaml", "      selfHeal: true", "      selfHeal: 1")
    assert_caught(problems(k8s_copy),
                  r"^staging: ServiceMonitor/moderation: CRD schema: spec.endpoints.0.honorLabels:"
                  r" 'no' is not of type 'boolean'",
                  r"^argocd: Application/moderation-production: CRD schema: "
                  r"spec.syncPolicy.automated.selfHeal: 1 is not of type 'boolean'")


def test_canary_weights_without_a_traffic_router_are_refused(k8s_copy):
    path = k8s_copy / "k8s/components/rollout-argo/rollout.yaml"
    path.write_text(re.sub(r"      trafficRouting:\n(        .*\n)+", "", path.read_text()))
    for env in ("production", "staging"):
        overlay = k8s_copy / f"k8s/overlays/{env}/kustomization.yaml"
        overlay.write_text(re.sub(r"  # The Gateway API plugin.*\n(?:  .*\n)*?        value: "
                                  r"moderation(-staging)?\n", "", overlay.read_text()))
    assert_caught(problems(k8s_copy),
                  r"^production: Rollout/moderation: weights \[10, 20, 30\] without "
                  r"trafficRouting.plugins.argoproj-labs/gatewayAPI")


def test_bento_container_without_a_writable_bentoml_home_is_refused(k8s_copy):
    edit(k8s_copy, "base/deployment.yaml", "              value: /tmp/bentoml",
         "              value: /home/bentoml")
    assert_caught(problems(k8s_copy),
                  r"^production: Deployment/moderation: container moderation: BENTOML_HOME "
                  r"/home/bentoml is not under a writable emptyDir mount")


def test_monitor_without_the_prometheus_release_label_is_refused(k8s_copy):
    edit(k8s_copy, "base/prometheusrule.yaml", "    release: kube-prometheus-stack",
         "    release: other")
    assert_caught(problems(k8s_copy),
                  r"^production: PrometheusRule/moderation: labels lack \{'release': "
                  r"'kube-prometheus-stack'\}")


def test_platform_and_route_mistakes_are_named(k8s_copy):
    edit(k8s_copy, "platform/gateway/gateway.yaml", "      protocol: HTTP\n      port: 80\n"
         "      hostname: \"*.moderation.example.org\"",
         "      protocol: HTTP\n      prot: 80\n      hostname: \"*.moderation.example.org\"")
    edit(k8s_copy, "overlays/staging/environment.yaml", "  listener: staging",
         "  listener: production")
    edit(k8s_copy, "platform/argo-rollouts/gatewayapi-plugin-rbac.yaml", "      - patch\n", "")
    assert_caught(problems(k8s_copy),
                  r"^platform: Gateway/moderation-gateway: CRD schema: spec.listeners.0: "
                  r"unknown field\(s\) 'prot'",
                  r"^staging: HTTPRoute/moderation: listener production does not admit exactly "
                  r"namespace moderation-staging",
                  r"^platform: RBAC: ServiceAccount argo-rollouts/argo-rollouts may not patch "
                  r"httproutes")
