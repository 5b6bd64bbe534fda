"""The service image, built and run for real: the Bento's own generated Dockerfile built with
Podman on a Debian base made here (`pipelines.release.image`), then started the way the rendered
Deployment starts it: its uid/gid, a read-only root with writable paths only where the pod mounts
an emptyDir, the pod's environment, and no network but its own loopback. The probes run inside
the container (`podman exec`), as the kubelet's would reach its port.

The first run builds the Debian base (minutes) and the package layers; later runs reuse both
from Podman's store while the Bento's requirements are unchanged."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.release import image as image_build
from tests.k8s.sandbox import container_env
from tests.k8s.system import require_tool
from tests.k8s.test_pod_sandbox import budget_s, port_of, workload

TARGET, NAME = "staging", "moderation"

PROBE = """
import json, sys, urllib.request, urllib.error
method, url, body = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None
req = urllib.request.Request(url, body.encode() if body else None,
                             {"Content-Type": "application/json"}, method=method)
try:
    with urllib.request.urlopen(req, timeout=5) as resp:
        print(json.dumps({"status": resp.status, "body": resp.read().decode(),
                          "request_id": resp.headers.get("X-Request-Id")}))
except urllib.error.HTTPError as err:
    print(json.dumps({"status": err.code, "body": err.read().decode()}))
except OSError as err:
    print(json.dumps({"status": 0, "body": str(err)}))
"""


@dataclass
class Built:
    reference: str
    bento: str
    build_s: float


@dataclass
class Pod:
    """A container started from the image as the pod spec says."""

    name: str
    mounts: dict[str, Path]  # emptyDir mountPath -> its host folder
    started: float

    def request(self, port: int, path: str, body: dict | None = None) -> dict:
        """An HTTP request from inside the container to its own port (loopback only)."""
        cmd = ["exec", self.name, "python", "-c", PROBE, "POST" if body else "GET",
               f"http://127.0.0.1:{port}{path}"] + ([json.dumps(body)] if body else [])
        result = subprocess.run(["podman", *cmd], capture_output=True, text=True, timeout=30,
                                env=image_build.podman_env())
        if result.returncode != 0:
            return {"status": 0, "body": result.stderr[-2000:]}
        return json.loads(result.stdout)

    def running(self) -> bool:
        return podman("inspect", "--format", "{{.State.Running}}", self.name) == "true"

    def logs(self) -> str:
        # the container's stderr comes back on podman's stderr
        result = subprocess.run(["podman", "logs", self.name], capture_output=True, text=True,
                                env=image_build.podman_env())
        return (result.stdout + result.stderr)[-4000:]


def podman(*args: str, timeout: float = 120) -> str:
    return image_build.podman(*args, timeout=timeout)


@pytest.fixture(scope="module")
def built(smoke_repo, tmp_path_factory) -> Built:
    """The smoke model's Bento and its image (built once for this module)."""
    for tool in ("podman", "mmdebstrap", "runc"):
        require_tool(tool)
    from service.bento import build_bento

    repo = Path(shutil.copytree(smoke_repo, tmp_path_factory.mktemp("image") / "repo",
                                symlinks=True))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENTOML_HOME", str(repo / ".bentoml"))
        bento = build_bento(repo / "models" / "candidate", root=repo)
        # one tag for every run: the previous run's image then only loses its name, and its
        # layers stay in the store as the build cache
        reference = "localhost/moderation-test:latest"
        build_s = image_build.build(bento, reference, backend="podman", base="local",
                                    use_local_index=True)
    return Built(reference, bento, build_s)


def run_as_pod(built: Built, pod: dict, container: dict, env: dict[str, str],
               work: Path) -> Pod:
    """`podman run` with the pod's user, read-only root, emptyDir mounts and environment."""
    sc = {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}
    name = f"moderation-test-{uuid.uuid4().hex[:8]}"
    # --read-only-tmpfs=false: Podman would otherwise put writable tmpfs on /tmp, /run, /var/tmp
    args = ["run", "--detach", "--name", name, "--network", "none", "--read-only",
            "--read-only-tmpfs=false", "--user", f"{sc['runAsUser']}:{sc['runAsGroup']}"]
    assert sc.get("readOnlyRootFilesystem") is True, "the pod runs a read-only root"
    if "ALL" in (sc.get("capabilities") or {}).get("drop", []):
        args += ["--cap-drop", "ALL"]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    emptydirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    mounts = {}
    for mount in container.get("volumeMounts", []):
        if mount["name"] in emptydirs:
            host = work / mount["name"]
            host.mkdir(parents=True, exist_ok=True)
            host.chmod(0o777)  # the kubelet creates an emptyDir world-writable
            args += ["--volume", f"{host}:{mount['mountPath']}"]
            mounts[mount["mountPath"]] = host
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    if container.get("command"):
        args += ["--entrypoint", json.dumps(container["command"])]
    podman(*args, built.reference, *container.get("args", []))
    return Pod(name, mounts, time.monotonic())


def wait_ready(pod: Pod, container: dict) -> float:
    """Poll the readiness probe inside the container within the startup budget; seconds."""
    probe = container["readinessProbe"]
    port, path = port_of(container, "readinessProbe"), probe["httpGet"]["path"]
    deadline = pod.started + budget_s(container["startupProbe"])
    while time.monotonic() < deadline:
        if not pod.running():
            raise AssertionError(f"the container exited before it was ready:\n{pod.logs()}")
        if pod.request(port, path)["status"] == 200:
            return time.monotonic() - pod.started
        time.sleep(1)
    raise AssertionError(f"not ready within the startup budget:\n{pod.logs()}")


def remove(pod: Pod) -> None:
    subprocess.run(["podman", "rm", "--force", "--time", "0", pod.name], capture_output=True,
                   env=image_build.podman_env(), timeout=60)


def changes(diff_json: str) -> set[str]:
    """The paths `podman diff --format json` lists (added, changed, deleted)."""
    return {path for paths in json.loads(diff_json or "{}").values() for path in paths}


def runtime_changes(built: Built) -> set[str]:
    """What Podman itself changes in a container of this image that runs nothing (the mount
    points of /etc/hosts, /etc/hostname, /etc/resolv.conf)."""
    name = f"moderation-idle-{uuid.uuid4().hex[:8]}"
    try:
        podman("run", "--detach", "--name", name, "--network", "none", "--read-only",
               "--read-only-tmpfs=false", "--entrypoint", "sleep", built.reference, "60")
        return changes(podman("diff", "--format", "json", name))
    finally:
        subprocess.run(["podman", "rm", "--force", "--time", "0", name], capture_output=True,
                       env=image_build.podman_env(), timeout=60)


def pod_env(docs: list[dict], container: dict) -> dict[str, str]:
    """The kubelet's env for the container (envFrom, env); the image supplies its own ENV."""
    return container_env(container, docs, {})


def test_image_serves_as_the_pod_runs_it_and_drains_its_log_into_the_mount(
        rendered, built, tmp_path):
    docs, pod_spec, container = workload(rendered, TARGET, NAME)
    env = pod_env(docs, container)
    db_url = env["MODERATION_DB_URL"]
    assert db_url.startswith("sqlite:////"), db_url
    pod = run_as_pod(built, pod_spec, container, env, tmp_path)
    try:
        cold_start = wait_ready(pod, container)
        port = port_of(container, "readinessProbe")
        answer = pod.request(port, "/classify", {"texts": ["you are lovely", "a second text"]})
        assert answer["status"] == 200, answer
        assert len(json.loads(answer["body"])) == 2
        metrics = pod.request(port, "/metrics")
        assert metrics["status"] == 200 and "moderation_requests_total" in metrics["body"]
        # the kubelet's stop: SIGTERM, then SIGKILL after the grace period
        stopping = time.monotonic()
        podman("kill", "--signal", "TERM", pod.name)
        code = podman("wait", pod.name, timeout=pod_spec["terminationGracePeriodSeconds"] + 30)
        shutdown_s = time.monotonic() - stopping
        assert code == "0", pod.logs()
        assert shutdown_s < pod_spec["terminationGracePeriodSeconds"]
        changed = podman("diff", "--format", "json", pod.name)
    finally:
        remove(pod)
    print(f"image: cold start to ready {cold_start:.1f} s, shutdown {shutdown_s:.1f} s, "
          f"build {built.build_s:.0f} s")
    # the prediction log reached the database in the mounted emptyDir
    db_path = Path(db_url.removeprefix("sqlite:///"))
    mount = next(m for m in pod.mounts if db_path.is_relative_to(m))
    with sqlite3.connect(pod.mounts[mount] / db_path.relative_to(mount)) as conn:
        logged = conn.execute("SELECT COUNT(*) FROM predictions WHERE client_request_id = ?",
                              (answer["request_id"],)).fetchone()[0]
    assert logged == 2
    # nothing was written outside the mounts (the read-only root refuses it; this shows it),
    # beyond what the engine itself changes in any container of this image
    outside = changes(changed) - runtime_changes(built)
    assert {p for p in outside if not any(Path(p).is_relative_to(m) for m in pod.mounts)} == set()


def test_image_check_fails_when_the_pod_mounts_its_emptydir_where_the_image_does_not_write(
        rendered, built, tmp_path):
    """The pod spec broken on purpose: the emptyDir at /scratch, so /tmp (BENTOML_HOME, the
    prediction log) is on the read-only root; the same check then fails."""
    docs, pod_spec, container = workload(rendered, TARGET, NAME)
    broken = json.loads(json.dumps(container))
    for mount in broken["volumeMounts"]:
        if mount["mountPath"] == "/tmp":
            mount["mountPath"] = "/scratch"
    pod = run_as_pod(built, pod_spec, broken, pod_env(docs, broken), tmp_path)
    try:
        with pytest.raises(AssertionError) as failure:
            wait_ready(pod, broken)
    finally:
        remove(pod)
    assert "Read-only file system" in str(failure.value), str(failure.value)[-3000:]


def test_image_carries_no_torch_and_its_facts_name_digest_size_packages_and_model(
        built, tmp_path):
    sbom = image_build.sbom(built.reference, tmp_path / "sbom.cdx.json")
    facts = image_build.facts(built.reference, built.bento, build_s=built.build_s,
                              sbom_file=sbom)
    names = {c["name"].lower() for c in json.loads(sbom.read_text())["components"]}
    assert {"bentoml", "onnxruntime", "tokenizers"} <= names
    assert not names & {"torch", "transformers"}
    assert facts.digest.startswith("sha256:")
    assert facts.model_version and facts.model_version in built.bento
    print(facts.markdown())
