"""Offline checks of the rendered Kubernetes manifests: schemas of the built-in kinds
(kubernetes-validate --strict) and the delivery policy on everything, custom resources included."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import yaml

from pipelines.deploy.kustomize import resource_id, venv_tool

# The Kubernetes version the built-in kinds are validated against, and the oldest one the
# manifests run on (the preStop `sleep` handler is beta and on by default from 1.30).
KUBERNETES_VERSION = "1.33.0"
MIN_KUBERNETES_VERSION = "1.30"
# The user `bentoml containerize` creates in the image (bentoml's BENTO_UID_GID); the pods run as
# it, so files the image owns stay readable.
IMAGE_UID = 1034
# Labels kube-prometheus-stack's Prometheus selects ServiceMonitors, PodMonitors and
# PrometheusRules by (its Helm release name); docs/deployment.md says how to change it.
PROMETHEUS_SELECTOR = {"release": "kube-prometheus-stack"}
MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
# Argo CD prunes resources that left git; a hashed ConfigMap/Secret of the previous revision is
# still read by the stable pods until the canary completes.
PRUNE_FALSE = ("argocd.argoproj.io/sync-options", "Prune=false")
# ...and, once out of git, must not keep the Application OutOfSync (a self-heal loop).
IGNORE_EXTRANEOUS = ("argocd.argoproj.io/compare-options", "IgnoreExtraneous")
KUSTOMIZE_HASH = re.compile(r"-[a-z0-9]{10}$")
GATEWAY_API_PLUGIN = "argoproj-labs/gatewayAPI"
# The shutdown budget of a serving pod: preStop sleep + MODERATION_DRAIN_TIMEOUT_S (its settings)
# + the prediction log's flush bound (the default timeout of service/predlog.py's
# PredictionLog.close; a test keeps them equal) + this margin must fit the grace period.
LOG_FLUSH_BOUND_S = 30
SHUTDOWN_MARGIN_S = 5
DRAIN_SETTING = "MODERATION_DRAIN_TIMEOUT_S"
# The ServiceAccount every pod of the service runs as; it carries the registry's pull Secret.
SERVICE_ACCOUNT = "moderation"

# Metric names are a contract with the service (docs/service-contract); every PromQL expression
# in analysis templates, alerts and dashboards may use only these.
CONTRACT_METRICS = frozenset({
    "moderation_requests_total", "moderation_request_duration_seconds", "moderation_batch_size",
    "moderation_predictions_total", "moderation_score", "moderation_errors_total",
    "moderation_shadow_predictions_total", "moderation_shadow_dropped_total",
    "moderation_log_dropped_total", "moderation_log_written_total", "moderation_log_database_up",
})
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# The three canary signals: success rate, p95 latency, label-share shift.
CANARY_SIGNALS = ("moderation_requests_total", "moderation_request_duration_seconds",
                  "moderation_predictions_total")

BUILTIN_GROUPS = frozenset({
    "", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io",
    "storage.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
    "node.k8s.io", "certificates.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io",
})
# Custom resources the policy below understands; anything else is reported, not ignored.
CUSTOM_KINDS = frozenset({
    ("argoproj.io", "Rollout"), ("argoproj.io", "AnalysisTemplate"),
    ("argoproj.io", "Application"), ("monitoring.coreos.com", "ServiceMonitor"),
    ("monitoring.coreos.com", "PodMonitor"), ("monitoring.coreos.com", "PrometheusRule"),
    ("flagger.app", "Canary"), ("flagger.app", "MetricTemplate"),
    ("gateway.networking.k8s.io", "HTTPRoute"), ("gateway.networking.k8s.io", "Gateway"),
})
# Every custom kind is validated against its CRD (k8s/platform installs some, k8s/crds vendors
# the rest).
CRD_VALIDATED = CUSTOM_KINDS
WORKLOAD_KINDS = ("Deployment", "Rollout", "StatefulSet")
REQUIRED_PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
PROBE_PATHS = {"livenessProbe": "/livez", "readinessProbe": "/readyz"}
# Created out of band in production (never in git); see docs/deployment.md.
EXTERNAL_SECRETS = frozenset({"moderation-db", "moderation-review"})
DURATION = re.compile(r"^\d+(s|m|h)$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _seconds(duration: str) -> int:
    """Seconds of a duration like 5m (DURATION)."""
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


@dataclass(frozen=True)
class Finding:
    """One policy or schema violation: where (overlay), which resource, what is wrong."""

    target: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.target}: {self.resource}: {self.message}"


# ---------------------------------------------------------------------------------------------
# Schemas of the built-in kinds


def api_group(doc: dict) -> str:
    api_version = str(doc.get("apiVersion", ""))
    return api_version.split("/")[0] if "/" in api_version else ""


def is_builtin(doc: dict) -> bool:
    return api_group(doc) in BUILTIN_GROUPS


def schema_findings(rendered: dict[str, list[dict]],
                    version: str = KUBERNETES_VERSION) -> list[Finding]:
    """Run kubernetes-validate --strict once over the built-in kinds of every rendered target."""
    findings: list[Finding] = []
    with TemporaryDirectory(prefix="k8s-validate-") as tmp:
        files: dict[str, str] = {}
        for i, (target, docs) in enumerate(rendered.items()):
            path = Path(tmp) / f"target-{i}.yaml"
            path.write_text(yaml.safe_dump_all([d for d in docs if is_builtin(d)]),
                            encoding="utf-8")
            files[str(path)] = target
        proc = subprocess.run([str(venv_tool("kubernetes-validate")), "--strict", "-k", version,
                               "--quiet", *files], capture_output=True, text=True, timeout=300)
    output = (proc.stdout + proc.stderr).strip()
    for line in output.splitlines():
        level, _, rest = line.partition(" ")
        if level not in ("ERROR", "WARN", "FATAL"):
            continue
        file, _, message = rest.partition(" ")
        target = files.get(file, "kubernetes-validate")
        match = re.match(r"did not validate for resource (\S+) against version \S+: (.*)", message)
        if match:
            findings.append(Finding(target, match.group(1), match.group(2)))
        else:
            # A WARN here means a built-in kind whose apiVersion this Kubernetes does not serve.
            findings.append(Finding(target, "schema", f"{level}: {message or rest}"))
    if proc.returncode != 0 and not findings:
        findings.append(Finding("kubernetes-validate", "schema", output or "failed"))
    return findings


# ---------------------------------------------------------------------------------------------
# Policy


class Manifests:
    """Rendered documents indexed by kind and name."""

    def __init__(self, docs: list[dict]):
        self.docs = docs

    def of_kind(self, *kinds: str) -> list[dict]:
        return [d for d in self.docs if d.get("kind") in kinds]

    def get(self, kind: str, name: str) -> dict | None:
        return next((d for d in self.of_kind(kind) if _name(d) == name), None)


def _name(doc: dict) -> str:
    return (doc.get("metadata") or {}).get("name", "")


def _dig(obj, *keys, default=None):
    for key in keys:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, list) and isinstance(key, int) and key < len(obj):
            obj = obj[key]
        else:
            return default
        if obj is None:
            return default
    return obj


def pod_template(doc: dict, manifests: Manifests) -> dict | None:
    """The pod template a workload runs (a Rollout with workloadRef borrows its Deployment's)."""
    ref = _dig(doc, "spec", "workloadRef")
    if doc.get("kind") == "Rollout" and ref:
        target = manifests.get(ref.get("kind", ""), ref.get("name", ""))
        return _dig(target, "spec", "template") if target else None
    return _dig(doc, "spec", "template")


def pod_label_sets(manifests: Manifests) -> list[dict]:
    labels = []
    for workload in manifests.of_kind(*WORKLOAD_KINDS):
        template = pod_template(workload, manifests)
        if template:
            labels.append(_dig(template, "metadata", "labels", default={}))
    return labels


def selects_pods(selector: dict, manifests: Manifests) -> bool:
    return bool(selector) and any(selector.items() <= labels.items()
                                  for labels in pod_label_sets(manifests))


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None when it is (tag or digest, never latest)."""
    name, _, digest = image.partition("@")
    if digest:
        return None if DIGEST.match(digest) else f"image {image} has a malformed digest"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image} is not pinned (needs a tag or digest in the overlay's images:)"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image} uses the tag latest (pin a concrete tag or digest)"
    return None


# Environments whose pin must name the image by digest. A tag can be pushed again with other
# bytes, and with imagePullPolicy IfNotPresent each node keeps whatever it pulled first, so a
# rollback by tag can run a different image on every node. Staging may use tags.
DIGEST_PINNED = frozenset({"production"})
# The production pin the template ships: an image of the example owner that no one can push to,
# so there is no real digest to pin until the first promotion (`python -m pipelines retrain
# propose` pins the digest `retrain image` recorded). Tolerated only until a digest has been
# pinned; afterwards a return to it would run no image at all.
INITIAL_PLACEHOLDER_PIN = "ghcr.io/example-org/moderation-service:transformer-4d4a25b1-0219b906"


def pin_problem(env: str, reference: str, digest_pinned_before: bool) -> str | None:
    """Why an environment's image pin breaks the digest rule, or None. `reference` is the pin
    (name:tag or name@digest); `digest_pinned_before`: the overlay's git history holds a digest
    pin."""
    if env not in DIGEST_PINNED or "@" in reference:
        return None
    fix = ("pin the digest the image step recorded: `python -m pipelines deploy promote "
           f"{env} --image-facts reports/image/facts.json` or `--digest sha256:...`")
    if reference == INITIAL_PLACEHOLDER_PIN and not digest_pinned_before:
        return None
    if reference == INITIAL_PLACEHOLDER_PIN:
        return (f"pin {reference} is the template's placeholder, but this overlay has been "
                f"pinned by digest before: {fix}")
    return f"pin {reference} is a tag; {env} is pinned by digest: {fix}"


def check_custom_kinds(m: Manifests) -> Iterator[tuple[str, str]]:
    for doc in m.docs:
        if not is_builtin(doc) and (api_group(doc), doc.get("kind")) not in CUSTOM_KINDS:
            yield resource_id(doc), (f"unknown custom resource {doc.get('apiVersion')} "
                                     f"{doc.get('kind')}: no policy check knows it")


def check_containers(m: Manifests) -> Iterator[tuple[str, str]]:
    for workload in m.of_kind(*WORKLOAD_KINDS):
        if workload.get("kind") == "Rollout" and _dig(workload, "spec", "workloadRef"):
            continue  # its pod template is the Deployment's, checked there
        rid = resource_id(workload)
        pod = _dig(workload, "spec", "template", "spec", default={})
        pod_sc = pod.get("securityContext") or {}
        grace = pod.get("terminationGracePeriodSeconds", 30)
        emptydirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for kind, containers in (("container", pod.get("containers", [])),
                                 ("init container", pod.get("initContainers", []))):
            for c in containers:
                where = f"{kind} {c.get('name')}"
                problem = image_problem(str(c.get("image", "")))
                if problem:
                    yield rid, f"{where}: {problem}"
                yield from ((rid, f"{where}: {p}") for p in _security_problems(c, pod_sc))
                yield from ((rid, f"{where}: {p}") for p in _resource_problems(c))
                if kind == "container":
                    yield from ((rid, f"{where}: {p}")
                                for p in _serving_problems(c, grace, emptydirs))
                    yield from ((rid, f"{where}: {p}")
                                for p in _writable_home_problems(c, pod.get("volumes", [])))
        for key in ("runAsUser", "runAsGroup"):
            if pod_sc.get(key) != IMAGE_UID:
                yield rid, (f"securityContext.{key} {pod_sc.get(key)} is not the image's user "
                            f"{IMAGE_UID} (bentoml containerize)")


def _security_problems(c: dict, pod_sc: dict) -> Iterator[str]:
    sc = c.get("securityContext") or {}
    if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))):
        yield "securityContext.runAsNonRoot is not true"
    if sc.get("readOnlyRootFilesystem") is not True:
        yield "securityContext.readOnlyRootFilesystem is not true"
    if sc.get("allowPrivilegeEscalation") is not False:
        yield "securityContext.allowPrivilegeEscalation is not false"
    if "ALL" not in (_dig(sc, "capabilities", "drop", default=[]) or []):
        yield "securityContext.capabilities.drop does not include ALL"
    seccomp = _dig(sc, "seccompProfile", "type") or _dig(pod_sc, "seccompProfile", "type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        yield "no seccompProfile RuntimeDefault (pod or container securityContext)"


def _resource_problems(c: dict) -> Iterator[str]:
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if not _dig(c, "resources", section, resource):
                yield f"no resources.{section}.{resource}"


def _serving_problems(c: dict, grace: int, emptydirs: set[str]) -> Iterator[str]:
    for probe in REQUIRED_PROBES:
        if probe not in c:
            yield f"no {probe}"
    for probe, path in PROBE_PATHS.items():
        actual = _dig(c, probe, "httpGet", "path")
        if probe in c and actual != path:
            yield f"{probe} checks {actual!r}, the service contract says {path}"
    pre_stop = _dig(c, "lifecycle", "preStop")
    if not pre_stop:
        yield "no lifecycle.preStop (endpoints need time to drop the pod before it stops)"
    elif grace <= _dig(pre_stop, "sleep", "seconds", default=0):
        yield f"terminationGracePeriodSeconds {grace} does not outlast the preStop sleep"
    mounts = {v.get("mountPath"): v.get("name") for v in c.get("volumeMounts", [])}
    if mounts.get("/tmp") not in emptydirs:
        yield "no emptyDir mounted at /tmp (the root filesystem is read-only)"


def _writable_home_problems(c: dict, volumes: list[dict]) -> Iterator[str]:
    """A container running the image's own command (bentoml serve) creates BentoML's store
    folders under BENTOML_HOME at start: it must point into an emptyDir."""
    if c.get("command"):
        return
    home = next((v.get("value") for v in c.get("env", []) if v.get("name") == "BENTOML_HOME"),
                None)
    emptydirs = {v["name"] for v in volumes if "emptyDir" in v}
    writable = [m["mountPath"].rstrip("/") + "/" for m in c.get("volumeMounts", [])
                if m.get("name") in emptydirs and not m.get("readOnly")]
    if home is None:
        yield ("BENTOML_HOME is not set: the image's /home/bentoml/ is read-only and BentoML "
               "cannot start (set it under an emptyDir mount, e.g. /tmp/bentoml)")
    elif not any((home.rstrip("/") + "/").startswith(w) for w in writable):
        yield f"BENTOML_HOME {home} is not under a writable emptyDir mount {writable}"


def check_monitoring_selector(m: Manifests) -> Iterator[tuple[str, str]]:
    for doc in m.of_kind(*MONITORING_KINDS):
        labels = _dig(doc, "metadata", "labels", default={})
        if not PROMETHEUS_SELECTOR.items() <= labels.items():
            yield resource_id(doc), (f"labels lack {PROMETHEUS_SELECTOR}: kube-prometheus-stack's "
                                     "Prometheus would not select it")


def check_generated_config_survives_prune(m: Manifests) -> Iterator[tuple[str, str]]:
    for doc in m.of_kind("ConfigMap", "Secret"):
        name = _name(doc)
        annotations = _dig(doc, "metadata", "annotations", default={})
        if not KUSTOMIZE_HASH.search(name):
            continue
        if PRUNE_FALSE[1] not in str(annotations.get(PRUNE_FALSE[0], "")):
            yield resource_id(doc), (
                f"hashed name without {PRUNE_FALSE[0]}: {PRUNE_FALSE[1]}: Argo CD's prune would "
                "delete it while the stable pods still read it")
        if IGNORE_EXTRANEOUS[1] not in str(annotations.get(IGNORE_EXTRANEOUS[0], "")):
            yield resource_id(doc), (
                f"hashed name without {IGNORE_EXTRANEOUS[0]}: {IGNORE_EXTRANEOUS[1]}: after the "
                "next change the kept old copy leaves the Argo CD Application OutOfSync")


def check_rollouts(m: Manifests) -> Iterator[tuple[str, str]]:
    for rollout in m.of_kind("Rollout"):
        rid = resource_id(rollout)
        ref = _dig(rollout, "spec", "workloadRef")
        if ref and not m.get(ref.get("kind", ""), ref.get("name", "")):
            yield rid, f"workloadRef {ref.get('kind')}/{ref.get('name')} is not rendered"
        template = pod_template(rollout, m)
        labels = _dig(template, "metadata", "labels", default={})
        selector = _dig(rollout, "spec", "selector", "matchLabels", default={})
        if not selector or not selector.items() <= labels.items():
            yield rid, f"selector {selector} does not match its pod template labels {labels}"
        canary = _dig(rollout, "spec", "strategy", "canary")
        if not canary:
            yield rid, "no canary strategy"
            continue
        yield from ((rid, p) for p in step_problems(canary.get("steps", [])))
        yield from ((rid, p) for p in _traffic_routing_problems(rollout, canary, m))
        for role in ("stableService", "canaryService"):
            name = canary.get(role)
            service = m.get("Service", name or "")
            if not service:
                yield rid, f"{role} {name!r} is not a rendered Service"
            elif not selects_pods(_dig(service, "spec", "selector", default={}), m):
                yield rid, f"{role} {name} selects no pods"
        yield from ((rid, p) for p in _analysis_problems(canary, m))


def _traffic_routing_problems(rollout: dict, canary: dict, m: Manifests) -> Iterator[str]:
    """Without a traffic router a weight is only a share of replicas (10% of 3 pods is one pod,
    a third of the requests): weights below 100 need the Gateway API router."""
    partial = [s["setWeight"] for s in canary.get("steps", []) if 0 < s.get("setWeight", 100) < 100]
    plugin = _dig(canary, "trafficRouting", "plugins", GATEWAY_API_PLUGIN)
    if partial and not plugin:
        yield (f"weights {partial} without trafficRouting.plugins.{GATEWAY_API_PLUGIN}: they "
               "would be shares of replicas, not of requests")
        return
    if not plugin:
        return
    namespace = _dig(rollout, "metadata", "namespace")
    if plugin.get("namespace") != namespace:
        yield (f"trafficRouting {GATEWAY_API_PLUGIN}.namespace {plugin.get('namespace')!r} is "
               f"not the Rollout's namespace {namespace!r}")
    route = m.get("HTTPRoute", plugin.get("httpRoute", ""))
    if not route:
        yield f"trafficRouting HTTPRoute {plugin.get('httpRoute')!r} is not rendered"
        return
    backends = {ref.get("name") for rule in _dig(route, "spec", "rules", default=[])
                for ref in rule.get("backendRefs", [])}
    for role in ("stableService", "canaryService"):
        if canary.get(role) not in backends:
            yield (f"HTTPRoute {_name(route)} has no backendRef for the {role} "
                   f"{canary.get(role)!r}")


def ascending(values: list) -> bool:
    return all(a < b for a, b in zip(values, values[1:], strict=False))


def step_problems(steps: list[dict]) -> Iterator[str]:
    """Canary steps: weights ascend and end at 100, each weight below 100 is held by a pause,
    and every pause but the last has the same duration; the last one (the hold that gives the
    label-share check its sample) is no shorter. Both come from one place, the canary policy."""
    weights = [s["setWeight"] for s in steps if "setWeight" in s]
    if not weights or weights[-1] != 100 or not ascending(weights):
        yield f"canary weights {weights} must ascend and end at 100"
    durations = []
    for i, step in enumerate(steps):
        if "pause" in step:
            duration = _dig(step, "pause", "duration")
            if not DURATION.match(str(duration)):
                yield (f"step {i}: pause duration {duration!r} is not a duration like 5m "
                       "(is components/canary-policy included?)")
            durations.append(str(duration))
        if "setWeight" in step and step["setWeight"] < 100:
            after = steps[i + 1] if i + 1 < len(steps) else {}
            if "pause" not in after and "analysis" not in after:
                yield f"step {i}: weight {step['setWeight']} is not followed by a pause"
    if len(set(durations[:-1])) > 1:
        yield f"pause durations differ {durations}: set them once in components/canary-policy"
    elif len(durations) > 1 and all(DURATION.match(d) for d in durations) and \
            _seconds(durations[-1]) < _seconds(durations[0]):
        yield (f"the last pause {durations[-1]} is shorter than the others {durations[0]}: "
               "components/canary-policy's finalPause holds the last weight at least as long")


def _analysis_problems(canary: dict, m: Manifests) -> Iterator[str]:
    analyses = [canary.get("analysis") or {}]
    analyses += [s["analysis"] for s in canary.get("steps", []) if "analysis" in s]
    if not any(a.get("templates") for a in analyses):
        yield "no analysis: a canary without analysis cannot roll back on its own"
    for analysis in analyses:
        passed = {arg.get("name") for arg in analysis.get("args", [])}
        for ref in analysis.get("templates", []):
            kind = "ClusterAnalysisTemplate" if ref.get("clusterScope") else "AnalysisTemplate"
            template = m.get(kind, ref.get("templateName", ""))
            if not template:
                yield (f"references {kind} {ref.get('templateName')!r}, which is not in the "
                       "rendered manifests")
                continue
            for arg in _dig(template, "spec", "args", default=[]):
                if "value" not in arg and "valueFrom" not in arg and arg["name"] not in passed:
                    yield (f"{kind} {ref['templateName']} needs arg {arg['name']!r}, "
                           "which the Rollout does not pass")


def check_flagger(m: Manifests) -> Iterator[tuple[str, str]]:
    for canary in m.of_kind("Canary"):
        rid = resource_id(canary)
        spec = canary.get("spec", {})
        for field, kinds in (("targetRef", ("Deployment",)),
                             ("autoscalerRef", ("HorizontalPodAutoscaler",))):
            ref = spec.get(field) or {}
            if ref and (ref.get("kind") not in kinds or not m.get(ref["kind"], ref.get("name"))):
                yield rid, f"{field} {ref.get('kind')}/{ref.get('name')} is not rendered"
        analysis = spec.get("analysis") or {}
        weights = analysis.get("stepWeights", [])
        if not weights or weights[-1] >= 100 or not ascending(weights):
            yield rid, f"stepWeights {weights} must ascend below 100 (Flagger then promotes)"
        if not DURATION.match(str(analysis.get("interval"))):
            yield rid, f"analysis.interval {analysis.get('interval')!r} is not a duration"
        for metric in analysis.get("metrics", []):
            name = _dig(metric, "templateRef", "name")
            if name and not m.get("MetricTemplate", name):
                yield rid, f"metric {metric.get('name')} references MetricTemplate {name!r}, " \
                           "which is not in the rendered manifests"


def check_services(m: Manifests) -> Iterator[tuple[str, str]]:
    for service in m.of_kind("Service"):
        selector = _dig(service, "spec", "selector", default={})
        if not selects_pods(selector, m):
            yield resource_id(service), f"selector {selector} selects no pods"


def check_disruption(m: Manifests) -> Iterator[tuple[str, str]]:
    min_replicas = [_dig(h, "spec", "minReplicas", default=1)
                    for h in m.of_kind("HorizontalPodAutoscaler")]
    for pdb in m.of_kind("PodDisruptionBudget"):
        rid = resource_id(pdb)
        spec = pdb.get("spec", {})
        if not selects_pods(_dig(spec, "selector", "matchLabels", default={}), m):
            yield rid, "selector selects no pods"
        if "maxUnavailable" in spec:
            value = str(spec["maxUnavailable"])
            if value in ("0", "0%"):
                yield rid, "maxUnavailable 0 blocks every eviction (node drains, rollouts)"
        elif "minAvailable" in spec:
            value = spec["minAvailable"]
            if str(value) == "100%" or (isinstance(value, int) and min_replicas
                                       and value >= min(min_replicas)):
                yield rid, (f"minAvailable {value} leaves no pod to evict at "
                            f"minReplicas {min(min_replicas or [0])}")
    rollout_targets = {(_dig(r, "spec", "workloadRef", "kind"), _dig(r, "spec", "workloadRef",
                                                                      "name"))
                       for r in m.of_kind("Rollout")}
    for hpa in m.of_kind("HorizontalPodAutoscaler"):
        rid = resource_id(hpa)
        low = _dig(hpa, "spec", "minReplicas", default=1)
        high = _dig(hpa, "spec", "maxReplicas", default=0)
        if low < 2:
            yield rid, f"minReplicas {low}: a single pod cannot be drained without downtime"
        if high < low:
            yield rid, f"maxReplicas {high} is below minReplicas {low}"
        ref = _dig(hpa, "spec", "scaleTargetRef", default={})
        if not m.get(ref.get("kind", ""), ref.get("name", "")):
            yield rid, f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not rendered"
        if (ref.get("kind"), ref.get("name")) in rollout_targets:
            yield rid, (f"scales {ref.get('kind')}/{ref.get('name')}, which a Rollout takes "
                        "over (workloadRef): scale the Rollout instead")


def check_config_refs(m: Manifests) -> Iterator[tuple[str, str]]:
    configmaps = {_name(c) for c in m.of_kind("ConfigMap")}
    secrets = {_name(s) for s in m.of_kind("Secret")} | EXTERNAL_SECRETS
    for workload in m.of_kind("Deployment", "StatefulSet"):
        rid = resource_id(workload)
        pod = _dig(workload, "spec", "template", "spec", default={})
        for c in pod.get("containers", []):
            for source in c.get("envFrom", []):
                name = _dig(source, "configMapRef", "name")
                if name and name not in configmaps:
                    yield rid, f"container {c['name']}: envFrom ConfigMap {name!r} is not rendered"
            for var in c.get("env", []):
                ref = _dig(var, "valueFrom", "secretKeyRef", "name")
                if ref and ref not in secrets:
                    yield rid, f"container {c['name']}: env {var['name']} reads unknown " \
                               f"Secret {ref!r}"
                component = _dig(workload, "metadata", "labels", "app.kubernetes.io/component")
                if var.get("name") == "MODERATION_DB_URL" and "value" in var and \
                        component == "server":
                    yield rid, "MODERATION_DB_URL must come from a Secret (secretKeyRef)"


def promql_expressions(m: Manifests) -> Iterator[tuple[str, str]]:
    """(resource, expression) for every PromQL query: analysis, alerts, dashboards."""
    for t in m.of_kind("AnalysisTemplate"):
        for metric in _dig(t, "spec", "metrics", default=[]):
            yield resource_id(t), _dig(metric, "provider", "prometheus", "query", default="")
    for t in m.of_kind("MetricTemplate"):
        yield resource_id(t), _dig(t, "spec", "query", default="")
    for rule in m.of_kind("PrometheusRule"):
        for group in _dig(rule, "spec", "groups", default=[]):
            for r in group.get("rules", []):
                yield resource_id(rule), str(r.get("expr", ""))
    for cm in m.of_kind("ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            if key.endswith(".json"):
                for panel in json.loads(text).get("panels", []):
                    for target in panel.get("targets", []):
                        yield f"{resource_id(cm)} {key}", target.get("expr", "")


def metric_names(expr: str) -> set[str]:
    names = set()
    for name in re.findall(r"\bmoderation_[a-z_]+", expr):
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES
                     if name.endswith(s) and name[: -len(s)] in CONTRACT_METRICS), name)
        names.add(base)
    return names


CANARY_REQUEST_METRICS = re.compile(
    # The matchers may hold template placeholders ({{args.x}}, {{ namespace }}).
    r"\b(moderation_requests_total|moderation_request_duration_seconds_bucket)"
    r"\{((?:[^{}]|\{\{[^}]*\}\})*)\}")


def check_canary_queries(m: Manifests) -> Iterator[tuple[str, str]]:
    """Canary and alert queries on request metrics count /classify only, never probes and
    scrapes (an idle canary would score 100%)."""
    for doc in m.of_kind("AnalysisTemplate", "MetricTemplate", "PrometheusRule"):
        for rid, expr in promql_expressions(Manifests([doc])):
            for metric, matchers in CANARY_REQUEST_METRICS.findall(expr):
                if 'route="classify"' not in matchers:
                    yield rid, f"{metric}{{{matchers}}} does not select route=\"classify\""


def check_promql(m: Manifests) -> Iterator[tuple[str, str]]:
    used: dict[str, set[str]] = {}
    for rid, expr in promql_expressions(m):
        names = metric_names(expr)
        used.setdefault(rid.split(" ")[0], set()).update(names)
        for name in sorted(names - CONTRACT_METRICS):
            yield rid, f"PromQL uses {name}, which is not a metric of the service contract"
    for doc in m.of_kind("AnalysisTemplate", "PrometheusRule"):
        missing = [s for s in CANARY_SIGNALS if s not in used.get(resource_id(doc), set())]
        if missing:
            yield resource_id(doc), f"does not check {', '.join(missing)}"


def shutdown_budget(container: dict, pod: dict, m: Manifests) -> tuple[float, str] | None:
    """(seconds a pod's shutdown may take, how they add up) for a container that reads the
    drain setting, or None when it does not."""
    settings: dict[str, str] = {}
    for source in container.get("envFrom", []):
        cm = m.get("ConfigMap", _dig(source, "configMapRef", "name", default=""))
        settings.update((cm or {}).get("data") or {})
    settings.update({v["name"]: v["value"] for v in container.get("env", []) if "value" in v})
    if DRAIN_SETTING not in settings:
        return None
    pre_stop = _dig(container, "lifecycle", "preStop", "sleep", "seconds", default=0)
    drain = float(settings[DRAIN_SETTING])
    total = pre_stop + drain + LOG_FLUSH_BOUND_S + SHUTDOWN_MARGIN_S
    return total, (f"preStop {pre_stop} + {DRAIN_SETTING} {drain:g} + log flush "
                   f"{LOG_FLUSH_BOUND_S} + margin {SHUTDOWN_MARGIN_S} = {total:g} s")


def check_shutdown_budget(m: Manifests) -> Iterator[tuple[str, str]]:
    for workload in m.of_kind("Deployment", "StatefulSet"):
        pod = _dig(workload, "spec", "template", "spec", default={})
        grace = pod.get("terminationGracePeriodSeconds", 30)
        for c in pod.get("containers", []):
            budget = shutdown_budget(c, pod, m)
            if budget and budget[0] > grace:
                yield resource_id(workload), (
                    f"container {c.get('name')}: terminationGracePeriodSeconds {grace} is "
                    f"shorter than its shutdown ({budget[1]}): requests or log rows are lost "
                    "at the kill")


def check_service_account(m: Manifests) -> Iterator[tuple[str, str]]:
    account = m.get("ServiceAccount", SERVICE_ACCOUNT)
    if account is None:
        return
    if not account.get("imagePullSecrets"):
        yield resource_id(account), "no imagePullSecrets: a private image cannot be pulled"
    for workload in m.of_kind("Deployment", "StatefulSet"):
        pod = _dig(workload, "spec", "template", "spec", default={})
        if pod.get("serviceAccountName") != SERVICE_ACCOUNT and not pod.get("imagePullSecrets"):
            yield resource_id(workload), (
                f"runs as ServiceAccount {pod.get('serviceAccountName', 'default')!r}, not "
                f"{SERVICE_ACCOUNT!r}: its image pull Secret does not apply")


CHECKS = (check_shutdown_budget, check_service_account, check_custom_kinds, check_containers,
          check_rollouts, check_flagger, check_services, check_disruption, check_config_refs,
          check_promql, check_monitoring_selector, check_generated_config_survives_prune,
          check_canary_queries)


def policy_findings(target: str, docs: list[dict]) -> list[Finding]:
    """Every policy violation in one rendered target."""
    manifests = Manifests(docs)
    return [Finding(target, rid, message) for check in CHECKS for rid, message in check(manifests)]
