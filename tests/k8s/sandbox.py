"""Run a rendered container spec the way the kubelet would, in a bubblewrap sandbox: the image's
defaults overlaid with the manifest's command, env and envFrom, its uid/gid, a read-only root
with writable paths only where the pod mounts an emptyDir, its own network namespace (so the
container port is the manifest's, whatever else listens on the host).

The built image runs in tests/k8s/test_image.py; this sandbox runs the repository's code for the
checks that need load or several variants, with what the image holds emulated:
the Bento's source at /home/bentoml/bento/src (here: a read-only bind of the repository copy),
/home/bentoml read-only, BENTOML_HOME=/home/bentoml/ and the bentofile's `envs`, the process
started as `bentoml serve` of the service."""

from __future__ import annotations

import base64
import fcntl
import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipelines.ci import userns
from tests.k8s.system import require_tool

BENTO_SRC = "/home/bentoml/bento/src"
NS_GET_USERNS = 0xB701  # ioctl on a namespace file: a descriptor of the user namespace owning it
# ENV of a `bentoml containerize` image (besides the bentofile's `envs`).
IMAGE_ENV = {"BENTOML_HOME": "/home/bentoml/", "HOME": "/home/bentoml",
             "BENTO_PATH": "/home/bentoml/bento", "LANG": "C.UTF-8"}


@dataclass
class Sandbox:
    """A started container: its process and the pid that owns its network namespace."""

    proc: subprocess.Popen
    child_pid: int
    log: Path
    mounts: dict[str, Path]  # emptyDir mountPath -> its host folder

    def _nsenter(self, *cmd: str, run=subprocess.run, **kwargs):
        """Run cmd in the container's network namespace (a kubelet probe, a client beside the
        pod). Joining a network namespace needs CAP_SYS_ADMIN in the user namespace that owns it,
        which a non-root user (a hosted runner's) has only after joining that user namespace:
        bwrap nests a second one for the uid, so the owner is asked of the kernel
        (NS_GET_USERNS). Credentials stay the caller's."""
        net = f"/proc/{self.child_pid}/ns/net"
        net_fd = os.open(net, os.O_RDONLY)
        try:
            owner = fcntl.ioctl(net_fd, NS_GET_USERNS)
        finally:
            os.close(net_fd)
        try:
            return run([require_tool("nsenter"), f"--user=/proc/self/fd/{owner}", f"--net={net}",
                        "--preserve-credentials", *cmd], pass_fds=(owner,), **kwargs)
        finally:
            os.close(owner)

    def http_status(self, port: int, path: str, timeout: float = 3) -> int:
        """GET inside the container's network namespace (what a kubelet probe does)."""
        result = self._nsenter("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m",
                               str(timeout), f"http://127.0.0.1:{port}{path}",
                               capture_output=True, text=True, timeout=timeout + 5)
        return int(result.stdout or 0)

    def run_in_netns(self, *cmd: str, **kwargs) -> subprocess.Popen:
        """A process in the container's network namespace (a client beside the pod)."""
        return self._nsenter(*cmd, run=subprocess.Popen, **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def image_env(repo: Path) -> dict[str, str]:
    """The image's environment: containerize defaults plus the bentofile's `envs`."""
    spec = yaml.safe_load((repo / "bentofile.yaml").read_text())
    return {**IMAGE_ENV, **{e["name"]: str(e["value"]) for e in spec.get("envs", [])}}


def container_env(container: dict, docs: list[dict], base: dict[str, str],
                  external: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """The environment the kubelet gives the container: image env, then envFrom, then env.
    `external`: {Secret name: data} of the Secrets created out of band (never rendered)."""
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for name, data in (external or {}).items():
        by_name["Secret", name] = {"kind": "Secret", "data": {
            k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    env = dict(base)
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        env.update(_data(by_name[kind, ref["name"]]))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"].get("secretKeyRef") or var["valueFrom"].get("configMapKeyRef")
        kind = "Secret" if "secretKeyRef" in var["valueFrom"] else "ConfigMap"
        env[var["name"]] = _data(by_name[kind, ref["name"]])[ref["key"]]
    return env


def _data(doc: dict) -> dict[str, str]:
    if doc["kind"] == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
    return {k: str(v) for k, v in (doc.get("data") or {}).items()}


@functools.cache
def _user_namespace_problem() -> str | None:
    return userns.problem()


def require_user_namespaces() -> None:
    """Fail (never skip) where bubblewrap cannot create its namespaces, naming the make target
    that allows them (a hosted runner's AppArmor forbids them until `make userns` ran)."""
    message = _user_namespace_problem()
    if message:
        pytest.fail(message, pytrace=False)


def start(pod_spec: dict, container: dict, env: dict[str, str], repo: Path, work: Path,
          default_command: list[str]) -> Sandbox:
    """Start the container in bwrap; each emptyDir mount is a fresh host folder under `work`
    (an emptyDir is a node folder), everything else read-only."""
    require_user_namespaces()
    sc = {**(pod_spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
    assert sc.get("readOnlyRootFilesystem") is True, "the sandbox models a read-only root"
    emptydirs = {v["name"] for v in pod_spec.get("volumes", []) if "emptyDir" in v}
    args = [require_tool("bwrap"), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/dev/shm",
            # the image's home, read-only, with the Bento's source in it
            "--tmpfs", "/home", "--ro-bind", str(repo), BENTO_SRC, "--remount-ro", "/home",
            "--unshare-user", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            # its own pid namespace with the command as pid 1, as in a pod: when it exits or
            # bwrap is killed, the kernel kills every process in it (BentoML's workers too)
            "--unshare-pid", "--as-pid-1",
            "--uid", str(sc["runAsUser"]), "--gid", str(sc.get("runAsGroup", sc["runAsUser"])),
            "--die-with-parent", "--new-session", "--chdir", container.get("workingDir",
                                                                           BENTO_SRC)]
    mounts = {}
    for mount in container.get("volumeMounts", []):
        if mount["name"] in emptydirs:
            host = work / mount["name"]
            host.mkdir(parents=True, exist_ok=True)
            args += ["--bind", str(host), mount["mountPath"]]
            mounts[mount["mountPath"]] = host
    # The image's Python environment lies outside its emptyDirs; a virtualenv under one of their
    # paths here (a checkout in /tmp) would be hidden by the mount, so it is bound back read-only.
    venv = Path(sys.prefix).resolve()
    if any(venv.is_relative_to(path) for path in mounts):
        args += ["--ro-bind", str(venv), str(venv)]
    for name, value in env.items():
        args += ["--setenv", name, value]
    read_fd, write_fd = os.pipe()
    args += ["--info-fd", str(write_fd), "--"]
    args += [*(container.get("command") or default_command), *container.get("args", [])]
    log = work / "container.log"
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                                env={"PATH": os.environ["PATH"]})
    os.close(write_fd)
    child = _child_pid(read_fd)
    if child is None:
        proc.wait(10)
        raise RuntimeError(f"bwrap did not start the container:\n{log.read_text()[-3000:]}")
    return Sandbox(proc, int(child), log, mounts)


def _child_pid(fd: int) -> int | None:
    """bwrap's --info-fd JSON ({"child-pid": N}); None when it exits without one."""
    text = ""
    with os.fdopen(fd) as info:
        while "}" not in text:
            chunk = info.read(1)
            if not chunk:
                break
            text += chunk
    return json.loads(text).get("child-pid") if "}" in text else None


def venv_bin() -> Path:
    """This virtualenv's bin folder by its real path (a link under /tmp would be hidden by the
    pod's /tmp mount); it plays the image's Python environment."""
    return Path(sys.prefix).resolve() / "bin"


def bentoml_serve() -> list[str]:
    """The image's command: `bentoml serve` of the service (port from its own config)."""
    return [str(venv_bin() / "python"), "-m", "bentoml", "serve", "service.service:Moderation"]
