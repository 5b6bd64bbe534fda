"""A real Prometheus for the tests: the scrape config prometheus-operator would generate for the
rendered ServiceMonitor, the rendered recording rules, and the query API."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from loadtests.serving import free_port, http_status
from tests.k8s.system import require_tool


@dataclass(frozen=True)
class Pod:
    """One running server, as the cluster would name and label its pod."""

    namespace: str
    name: str
    template_hash: str
    url: str  # http://127.0.0.1:PORT


def sanitize(label: str) -> str:
    """Prometheus' label-name sanitising of podTargetLabels (rollouts-pod-template-hash)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def operator_scrape_configs(service_monitor: dict, service: dict, pods: list[Pod]) -> list[dict]:
    """One scrape job per pod with the target labels prometheus-operator's relabelling gives an
    Endpoints target of this ServiceMonitor: job = Service name, namespace, service, pod,
    container, endpoint = the port's name, and each podTargetLabel sanitised."""
    spec = service_monitor["spec"]
    (endpoint,) = spec["endpoints"]
    container = "moderation"
    jobs = []
    for pod in pods:
        labels = {"job": service["metadata"]["name"], "namespace": pod.namespace,
                  "service": service["metadata"]["name"], "pod": pod.name,
                  "container": container, "endpoint": endpoint["port"]}
        for label in spec.get("podTargetLabels", []):
            labels[sanitize(label)] = pod.template_hash
        address = urllib.parse.urlparse(pod.url).netloc
        jobs.append({
            "job_name": f"serviceMonitor/{pod.namespace}/{service_monitor['metadata']['name']}/"
                        f"{pod.name}",
            "honor_labels": bool(endpoint.get("honorLabels", False)),
            "metrics_path": endpoint.get("path", "/metrics"),
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "static_configs": [{"targets": [address]}],
            "relabel_configs": [{"target_label": name, "replacement": value}
                                for name, value in labels.items()],
        })
    return jobs


class Prometheus:
    """The HTTP query API of a running Prometheus."""

    def __init__(self, url: str):
        self.url = url

    def query(self, expr: str) -> list[dict]:
        """The instant vector `expr` evaluates to now (a list of {metric, value})."""
        params = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body["data"]["resultType"]
        return body["data"]["result"]

    def values(self, expr: str) -> list[float]:
        return [float(s["value"][1]) for s in self.query(expr)]

    def scraped_up_to(self, timeout: float = 20) -> None:
        """Wait until every target has been scraped twice since now (fresh samples)."""
        since = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as resp:
                targets = json.load(resp)["data"]["activeTargets"]
            if targets and all(t["health"] == "up" and _timestamp(t["lastScrape"]) > since + 1
                               for t in targets):
                return
            time.sleep(0.25)
        raise AssertionError(f"targets not scraped in {timeout}s: {targets}")


def _timestamp(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", rfc3339.replace("Z", "+00:00"))
                                  ).timestamp()


@contextmanager
def running_prometheus(work: Path, scrape_configs: list[dict],
                       rule_groups: list[dict]) -> Iterator[Prometheus]:
    """Prometheus on 127.0.0.1 scraping and evaluating every second; stopped on exit."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "rules.yaml").write_text(yaml.safe_dump({"groups": [
        {**g, "interval": "1s"} for g in rule_groups]}))
    (work / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(work / "rules.yaml")],
        "scrape_configs": scrape_configs}))
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [require_tool("prometheus"), f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while http_status(url + "/-/ready") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start:\n"
                                   f"{(work / 'prometheus.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield Prometheus(url)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


# ---------------------------------------------------------------------------------------------
# The controllers' side: template substitution and verdicts


def argo_query(metric: dict, args: dict[str, str]) -> str:
    """An AnalysisTemplate metric's query with {{args.x}} substituted as Argo Rollouts does."""
    query = metric["provider"]["prometheus"]["query"]
    query = re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: args[m.group(1)], query)
    assert "{{" not in query, query
    return query


def argo_verdict(metric: dict, args: dict[str, str], result: list[float]) -> str:
    """Successful / Failed / Inconclusive for one measurement, from the metric's conditions."""

    def holds(condition: str) -> bool:
        condition = re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda m: args[m.group(1)],
                           condition)
        python = condition.replace("&&", " and ").replace("||", " or ")
        return bool(eval(python, {"__builtins__": {}}, {"len": len, "result": result}))

    if holds(metric["failureCondition"]):
        return "Failed"
    if holds(metric["successCondition"]):
        return "Successful"
    return "Inconclusive"


def flagger_query(template: dict, namespace: str, target: str, interval: str,
                  variables: dict[str, str]) -> str:
    """A MetricTemplate's query with Flagger's placeholders substituted."""
    query = template["spec"]["query"]
    values = {"namespace": namespace, "target": target, "interval": interval,
              **{f"variables.{k}": v for k, v in variables.items()}}
    query = re.sub(r"\{\{\s*([\w.]+)\s*\}\}", lambda m: values[m.group(1)], query)
    assert "{{" not in query, query
    return query


def flagger_verdict(threshold: dict, result: list[float]) -> str:
    """Flagger's check: no value is a failed check; otherwise the thresholdRange decides."""
    if not result:
        return "Failed"
    value = result[0]
    ok = threshold.get("min", float("-inf")) <= value <= threshold.get("max", float("inf"))
    return "Successful" if ok else "Failed"
