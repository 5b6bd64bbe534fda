"""The serving pods under their own constraints: started as the rendered manifests say (env,
envFrom, uid/gid, read-only root, emptyDir mounts) in bubblewrap, probed at the manifest's paths
and ports within the startup budget, and stopped the way the kubelet stops them.

What the built image shows is in tests/k8s/test_image.py; this keeps what it does not: load
through the preStop sleep with no acknowledged prediction lost, the shadow and review variants,
and the start without BENTOML_HOME in the emptyDir."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from pipelines.deploy.policy import Manifests
from tests.conftest import wait_until
from tests.k8s.conftest import REPO
from tests.k8s.sandbox import (
    BENTO_SRC,
    bentoml_serve,
    container_env,
    image_env,
    start,
    venv_bin,
)

# The model a Bento carries in its own store; the repository copy's smoke model stands in.
MODEL_DIR = f"{BENTO_SRC}/models/candidate"
# How long the sandbox keeps serving in place of the full preStop sleep (the rest of the story is
# arithmetic on the manifest's numbers).
PRESTOP_SAMPLE_S = 3

LOAD_SCRIPT = """
import json, sys, time, urllib.request, urllib.error
port, out, deadline = int(sys.argv[1]), open(sys.argv[2], "w"), time.monotonic() + 60
failures = 0
for i in range(100000):
    if time.monotonic() > deadline or failures > 20:
        break
    texts = [f"sandbox text {i} {j}" for j in range(1 + i % 3)]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/classify",
                                 json.dumps({"texts": texts}).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            out.write(f"{resp.headers['X-Request-Id']} {len(texts)}\\n")
            out.flush()
            failures = 0
    except (urllib.error.URLError, OSError):
        failures += 1
        time.sleep(0.05)
"""


def workload(rendered, target: str, name: str):
    docs = rendered[target]
    pod = Manifests(docs).get("Deployment", name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return docs, pod, container


def port_of(container: dict, probe: str) -> int:
    port = container[probe]["httpGet"]["port"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    return named.get(port, port)


def budget_s(probe: dict) -> float:
    return probe.get("initialDelaySeconds", 0) + probe["periodSeconds"] * probe.get(
        "failureThreshold", 3)


def started(rendered, smoke_repo, work: Path, target: str, name: str, drop: tuple[str, ...] = ()):
    docs, pod, container = workload(rendered, target, name)
    env = container_env(container, docs, image_env(smoke_repo))
    env.update(MODERATION_MODEL_DIR=MODEL_DIR, PATH=os.environ["PATH"])
    for key in drop:
        env[key] = image_env(smoke_repo).get(key, "")
    return pod, container, start(pod, container, env, smoke_repo, work, bentoml_serve())


def wait_until_started(sandbox, container) -> float:
    """Poll the startup probe as the kubelet would; seconds until it passed."""
    probe = container["startupProbe"]
    began = time.monotonic()
    ok = wait_until(lambda: sandbox.proc.poll() is not None or sandbox.http_status(
        port_of(container, "startupProbe"), probe["httpGet"]["path"]) == 200,
        timeout=budget_s(probe), interval=1)
    assert ok and sandbox.proc.poll() is None, sandbox.log.read_text()[-4000:]
    return time.monotonic() - began


# The serving pod itself is started from the real image in tests/k8s/test_image.py; here the
# shadow variant, whose Deployment differs (its own env and model), in the repository's code.
@pytest.mark.parametrize(("target", "name"), [("production+shadow", "moderation-shadow")])
def test_pod_starts_read_only_as_the_image_user_and_passes_its_probes(rendered, smoke_repo,
                                                                      tmp_path, target, name):
    _, container, sandbox = started(rendered, smoke_repo, tmp_path, target, name)
    try:
        startup = wait_until_started(sandbox, container)
        for probe in ("livenessProbe", "readinessProbe"):
            path = container[probe]["httpGet"]["path"]
            assert sandbox.http_status(port_of(container, probe), path) == 200, (probe, path)
        assert startup < budget_s(container["startupProbe"])
        # it wrote only into its emptyDir: BentoML's store and (staging) the prediction log
        written = {p.relative_to(sandbox.mounts["/tmp"]).parts[0]
                   for p in sandbox.mounts["/tmp"].rglob("*")}
        assert "bentoml" in written, written
    finally:
        sandbox.stop()


def test_without_bentoml_home_in_the_emptydir_the_server_cannot_start(rendered, smoke_repo,
                                                                      tmp_path):
    """The image's own BENTOML_HOME (/home/bentoml/) on the read-only root: what main had."""
    _, container, sandbox = started(rendered, smoke_repo, tmp_path, "staging", "moderation",
                                    drop=("BENTOML_HOME",))
    try:
        code = sandbox.proc.wait(budget_s(container["startupProbe"]))
    finally:
        sandbox.stop()
    log = sandbox.log.read_text()
    assert code != 0
    assert "/home/bentoml" in log, log[-3000:]
    assert "Read-only file system" in log or "Permission denied" in log, log[-3000:]


def test_termination_keeps_serving_through_prestop_and_loses_no_acknowledged_prediction(
        rendered, smoke_repo, tmp_path):
    pod, container, sandbox = started(rendered, smoke_repo, tmp_path, "staging", "moderation")
    acknowledged_file = tmp_path / "acknowledged.txt"
    try:
        wait_until_started(sandbox, container)
        load = sandbox.run_in_netns(str(venv_bin() / "python"), "-c", LOAD_SCRIPT,
                                    str(port_of(container, "readinessProbe")),
                                    str(acknowledged_file))
        time.sleep(2)
        # preStop: the pod is leaving the endpoints but still serves
        before_prestop = len(acknowledged_file.read_text().splitlines())
        time.sleep(PRESTOP_SAMPLE_S)
        during_prestop = len(acknowledged_file.read_text().splitlines()) - before_prestop
        stopping = time.monotonic()
        os.kill(sandbox.child_pid, signal.SIGTERM)
        code = sandbox.proc.wait(pod["terminationGracePeriodSeconds"])
        shutdown_s = time.monotonic() - stopping
        load.wait(90)
    finally:
        sandbox.stop()
    assert code == 0, sandbox.log.read_text()[-3000:]
    assert during_prestop > 0, "the container stopped answering during preStop"
    prestop_s = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert prestop_s + shutdown_s < pod["terminationGracePeriodSeconds"]
    acknowledged = dict(line.split() for line in acknowledged_file.read_text().splitlines())
    assert len(acknowledged) > 10
    db = sandbox.mounts["/tmp"] / "predictions.db"
    with sqlite3.connect(db) as conn:
        logged = dict(conn.execute("SELECT client_request_id, COUNT(*) FROM predictions "
                                   "GROUP BY client_request_id").fetchall())
    missing = {rid: n for rid, n in acknowledged.items() if logged.get(rid) != int(n)}
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged requests not logged"


def test_review_pod_starts_read_only_with_its_token_from_the_secret(rendered, tmp_path):
    """The review UI as components/review runs it: its own command, the token and database from
    the out-of-band Secrets, the same read-only root; the UI needs no model."""
    docs, pod, container = workload(rendered, "production+review", "moderation-review")
    secrets = {"moderation-review": {"token": "sandbox-token-5c8e1f42a9d7"},
               "moderation-db": {"url": "sqlite:////tmp/review.db"}}
    env = container_env(container, docs, image_env(REPO), secrets)
    # the image's Python environment comes first on its PATH
    env["PATH"] = f"{venv_bin()}{os.pathsep}{os.environ['PATH']}"
    sandbox = start(pod, container, env, REPO, tmp_path, default_command=[])
    try:
        wait_until_started(sandbox, container)
        port = port_of(container, "readinessProbe")
        assert sandbox.http_status(port, container["readinessProbe"]["httpGet"]["path"]) == 200
        assert sandbox.http_status(port, "/api/counts") == 401  # the token is required
    finally:
        sandbox.stop()
    assert (sandbox.mounts["/tmp"] / "review.db").exists()
