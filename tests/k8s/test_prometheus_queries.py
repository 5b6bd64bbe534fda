"""The canary analysis against a real Prometheus and the real service.

Three servers of the smoke model play the pods: a stable one, a healthy canary and a canary whose
model raises on every call (an unfitted scikit-learn step: the service's own inference path
fails). Prometheus scrapes them every second with the labels prometheus-operator's relabelling
gives the rendered ServiceMonitor's targets, and evaluates the rendered recording rules. Every
AnalysisTemplate and MetricTemplate query is then evaluated through the HTTP API with its
arguments substituted, and judged by the template's own conditions.

Namespace `healthy` holds stable + healthy canary, `failing` stable + failing canary, `dead`
stable + a canary that never serves (crashed: the Gateway answers its share with 503s, so only
the stable pod's series exist); the stable server is scraped once per namespace."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from pipelines.deploy.policy import Manifests
from tests.k8s.prom import (
    Pod,
    argo_query,
    argo_verdict,
    flagger_query,
    flagger_verdict,
    operator_scrape_configs,
    running_prometheus,
)
from tests.service.server import running_service

STABLE, GOOD, BAD = "5d8f7b9c6d", "7c9b8d6f5a", "6b5c4d3e2f"
DEAD = "4a3b2c1d0e"  # the dead canary's hash: no pod of it is ever scraped
# Flagger tells canary from primary by pod name; Argo Rollouts by the template-hash label.
POD_NAMES = {STABLE: f"moderation-primary-{STABLE}-x7k2p", GOOD: f"moderation-{GOOD}-q4m9t",
             BAD: f"moderation-{BAD}-z8w3v"}
REQUESTS_PER_POD = 80
PROBE_SECONDS = 6
# Traffic spread over several scrapes, as real traffic is: a counter's rise before its first
# scrape is invisible to rate() and increase().
TRAFFIC_SECONDS = 8


def failing_model(smoke_repo: Path, dest: Path) -> Path:
    """The smoke baseline model with its classifier step replaced by an unfitted copy: it loads
    like any model and raises NotFittedError on every prediction."""
    import joblib
    from sklearn.base import clone

    shutil.copytree(smoke_repo / "models/baseline", dest)
    pipeline = joblib.load(dest / "model.joblib")
    name, step = pipeline.steps[-1]
    pipeline.steps[-1] = (name, clone(step))
    joblib.dump(pipeline, dest / "model.joblib")
    return dest


def start_servers(stack: ExitStack, smoke_repo: Path, work: Path) -> dict[str, str]:
    """{template hash: base URL}; the three servers start in parallel."""
    models = {STABLE: smoke_repo / "models/candidate", GOOD: smoke_repo / "models/candidate",
              BAD: failing_model(smoke_repo, work / "failing-model")}

    def start(item):
        template_hash, model = item
        folder = work / template_hash
        folder.mkdir()
        context = running_service(smoke_repo, {"model_dir": str(model),
                                               "db_url": f"sqlite:///{folder}/predictions.db"},
                                  folder / "server.log")
        base, _ = context.__enter__()
        return template_hash, base, context

    urls = {}
    with ThreadPoolExecutor(len(models)) as pool:
        for template_hash, base, context in pool.map(start, models.items()):
            stack.push(context.__exit__)
            urls[template_hash] = base
    return urls


def probe(urls: list[str], seconds: float) -> None:
    """What the kubelet does meanwhile: liveness and readiness probes, no traffic."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for url in urls:
            for path in ("/livez", "/readyz"):
                urllib.request.urlopen(url + path, timeout=5).close()
        time.sleep(0.1)


def classify_calls(url: str, count: int, seconds: float = 0) -> dict[int, int]:
    """`count` sequential /classify calls spread over at least `seconds`; {status: how many}."""
    statuses: dict[int, int] = {}
    began = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, began + i * seconds / count - time.monotonic()))
        body = json.dumps({"texts": [f"canary text {i}", "you are wonderful"]}).encode()
        request = urllib.request.Request(url + "/classify", body,
                                         {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status = resp.status
        except urllib.error.HTTPError as e:
            status = e.code
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


@pytest.fixture(scope="module")
def analysis(rendered, smoke_repo, tmp_path_factory):
    """Run the scenario once: idle measurements, then traffic, then final measurements."""
    work = tmp_path_factory.mktemp("prometheus-queries")
    production = Manifests(rendered["production"])
    flagger = Manifests(rendered["production-flagger"])
    with ExitStack() as stack:
        urls = start_servers(stack, smoke_repo, work)
        pods = [Pod(ns, POD_NAMES[h], h, urls[h])
                for ns, hashes in (("healthy", (STABLE, GOOD)), ("failing", (STABLE, BAD)),
                                   ("dead", (STABLE,)))
                for h in hashes]
        scrape = operator_scrape_configs(production.get("ServiceMonitor", "moderation"),
                                         production.get("Service", "moderation"), pods)
        (rule,) = production.of_kind("PrometheusRule")
        prometheus = stack.enter_context(running_prometheus(work / "prometheus", scrape,
                                                            rule["spec"]["groups"]))
        probe(list(urls.values()), PROBE_SECONDS)
        prometheus.scraped_up_to()
        idle = measure(prometheus, production, flagger)
        # one call each first, so every counter series exists before the measured traffic
        first = {h: classify_calls(url, 1) for h, url in urls.items()}
        prometheus.scraped_up_to()
        traffic = {}
        threads = [threading.Thread(target=lambda h=h: traffic.__setitem__(
            h, classify_calls(urls[h], REQUESTS_PER_POD, TRAFFIC_SECONDS))) for h in urls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        prometheus.scraped_up_to()
        time.sleep(2)  # two more rule evaluations on the fresh samples
        final = measure(prometheus, production, flagger)
        series = prometheus.query('moderation_requests_total{route="classify"}')
        recorded = {name: {s["metric"]["namespace"]: float(s["value"][1])
                           for s in prometheus.query(name)}
                    for name in ("moderation:success_ratio:rate5m",
                                 "moderation:classify_p95_seconds:rate5m")}
    return {"idle": idle, "final": final, "first": first, "traffic": traffic, "series": series,
            "recorded": recorded}


def measure(prometheus, production: Manifests, flagger: Manifests) -> dict:
    """{(controller, namespace, metric): verdict} for both canaries, as each controller judges."""
    verdicts = {}
    template = production.get("AnalysisTemplate", "moderation-canary-health")
    defaults = {a["name"]: a["value"] for a in template["spec"]["args"] if "value" in a}
    canary = flagger.get("Canary", "moderation")
    for namespace, canary_hash in (("healthy", GOOD), ("failing", BAD), ("dead", DEAD)):
        args = {**defaults, "namespace": namespace, "canary-hash": canary_hash,
                "stable-hash": STABLE}
        for metric in template["spec"]["metrics"]:
            result = prometheus.values(argo_query(metric, args))
            verdicts["argo", namespace, metric["name"]] = argo_verdict(metric, args, result)
        if namespace == "dead":
            continue  # Flagger judges an empty canary result as a failed check already
        for metric in canary["spec"]["analysis"]["metrics"]:
            mt = flagger.get("MetricTemplate", metric["templateRef"]["name"])
            query = flagger_query(mt, namespace, "moderation", metric["interval"],
                                  metric.get("templateVariables", {}))
            verdicts["flagger", namespace, metric["name"]] = flagger_verdict(
                metric["thresholdRange"], prometheus.values(query))
    return verdicts


def test_the_servers_answered_as_the_scenario_needs(analysis):
    assert analysis["first"] == {STABLE: {200: 1}, GOOD: {200: 1}, BAD: {500: 1}}
    assert analysis["traffic"][GOOD] == {200: REQUESTS_PER_POD}
    assert analysis["traffic"][STABLE] == {200: REQUESTS_PER_POD}
    assert analysis["traffic"][BAD] == {500: REQUESTS_PER_POD}


def test_series_carry_the_operator_target_labels_and_keep_their_route(analysis):
    labels = [s["metric"] for s in analysis["series"]]
    assert labels and all(m["endpoint"] == "http" and m["job"] == "moderation" and
                          m["rollouts_pod_template_hash"] in (STABLE, GOOD, BAD) and
                          "exported_endpoint" not in m for m in labels)


@pytest.mark.parametrize("controller", ["argo", "flagger"])
def test_an_idle_canary_is_never_a_pass(analysis, controller):
    verdicts = {k[2]: v for k, v in analysis["idle"].items() if k[:2] == (controller, "healthy")}
    assert len(verdicts) == {"argo": 4, "flagger": 3}[controller]
    assert "Successful" not in verdicts.values(), verdicts


@pytest.mark.parametrize("controller", ["argo", "flagger"])
def test_a_healthy_canary_passes_every_check(analysis, controller):
    verdicts = {k[2]: v for k, v in analysis["final"].items() if k[:2] == (controller, "healthy")}
    expected = {"success-rate": "Successful", "p95-latency": "Successful",
                "label-share-shift": "Successful"}
    if controller == "argo":
        expected["canary-traffic"] = "Successful"
    assert verdicts == expected


@pytest.mark.parametrize("controller", ["argo", "flagger"])
def test_a_canary_failing_its_classify_calls_fails_the_success_rate(analysis, controller):
    assert analysis["final"][controller, "failing", "success-rate"] == "Failed"


def test_recording_rules_see_classify_traffic_and_its_latency(analysis):
    success = analysis["recorded"]["moderation:success_ratio:rate5m"]
    assert success["healthy"] == 1.0
    # stable answers every call, the failing canary none: about half
    assert 0.3 < success["failing"] < 0.7
    p95 = analysis["recorded"]["moderation:classify_p95_seconds:rate5m"]
    assert set(p95) == {"healthy", "failing", "dead"} and 0 < p95["healthy"] < 5


def test_a_dead_canary_whose_share_the_gateway_answers_with_503s_fails_the_analysis(analysis):
    """Its own metrics are empty (success rate, latency, label share: inconclusive), but the
    stable pods keep answering their share: the canary's share of the routed calls is 0."""
    verdicts = {k[2]: v for k, v in analysis["final"].items() if k[:2] == ("argo", "dead")}
    assert verdicts == {"success-rate": "Inconclusive", "p95-latency": "Inconclusive",
                        "label-share-shift": "Inconclusive", "canary-traffic": "Failed"}
    idle = {k[2]: v for k, v in analysis["idle"].items() if k[:2] == ("argo", "dead")}
    assert idle["canary-traffic"] == "Inconclusive"  # no traffic at all is no verdict
