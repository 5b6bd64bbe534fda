"""The rollout workflow's steps (push model, beside Argo CD): apply the overlays a merge changed,
watch the canary until it is promoted or aborted, and open the revert pull request on failure."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from pipelines.core.tools import run
from pipelines.deploy.kustomize import render, venv_tool
from pipelines.deploy.pins import K8S_DIR, overlay_dir
from pipelines.runtime.errors import PipelineError

ROLLOUT_NAME = "moderation"  # k8s/components/rollout-argo/rollout.yaml


class RolloutError(PipelineError):
    """A rollout step failed; the message names the overlay, the cluster or the rollout."""


def all_overlays(root: Path | str = ".") -> list[str]:
    """Every environment with an overlay: what `rollout apply` applies by default. Applying all
    of main's overlays (unchanged ones are no-ops, as in an Argo CD sync) loses nothing when the
    rollout workflow's queue drops a pending run: a diff of the last commit alone would."""
    base = Path(root) / K8S_DIR / "overlays"
    return sorted(p.parent.name for p in base.glob("*/kustomization.yaml"))


@contextlib.contextmanager
def cluster_access(env: dict[str, str] | None = None) -> Iterator[Path]:
    """A kubeconfig file for the cluster: from KUBE_CONFIG (base64), or EKS_CLUSTER via the
    AWS CLI with the OIDC role's credentials. It lives only for the step."""
    env = dict(os.environ if env is None else env)
    with tempfile.TemporaryDirectory(prefix="kubeconfig-") as tmp:
        path = Path(tmp) / "config"
        if env.get("KUBE_CONFIG"):
            try:
                path.write_bytes(base64.b64decode(env["KUBE_CONFIG"], validate=True))
            except (binascii.Error, ValueError):
                raise RolloutError("KUBE_CONFIG is not base64: set the secret to the output of "
                                   "`base64 -w0 ~/.kube/config`") from None
        elif env.get("EKS_CLUSTER"):
            _run(["aws", "eks", "update-kubeconfig", "--name", env["EKS_CLUSTER"],
                  "--kubeconfig", str(path)], f"EKS cluster {env['EKS_CLUSTER']}")
        else:
            raise RolloutError("no cluster to deploy to: set the secret KUBE_CONFIG (base64 "
                               "kubeconfig) or the variable EKS_CLUSTER (with AWS_ROLE_ARN)")
        path.chmod(0o600)
        yield path


def _run(cmd: list[str], what: str, stdin: str | None = None, timeout: float = 300) -> str:
    return run(cmd, what, stdin=stdin, timeout=timeout, error=RolloutError)


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, what: str = "kubectl"
            ) -> str:
    return _run([str(venv_tool("kubectl")), "--kubeconfig", str(kubeconfig),
                 "--request-timeout=30s", *args], what, stdin)


def namespace(env: str, root: Path | str = ".") -> str:
    doc = yaml.safe_load((overlay_dir(env, Path(root)) / "kustomization.yaml").read_text())
    return doc.get("namespace", "default")


def apply(envs: list[str], kubeconfig: Path, root: Path | str = ".") -> list[str]:
    """`kubectl apply` the rendered overlays (the same rendering `make k8s-validate` checks)."""
    lines = []
    for env in envs:
        manifests = render(overlay_dir(env, Path(root)))
        out = kubectl(kubeconfig, "apply", "-f", "-", stdin=manifests,
                      what=f"apply k8s/overlays/{env}")
        lines.append(f"rollout: applied k8s/overlays/{env}:\n{out.strip()}")
    return lines


def rollout_state(rollout: dict[str, Any]) -> str:
    """healthy (the new revision is stable), failed (degraded or aborted), or in progress."""
    status = rollout.get("status") or {}
    if status.get("abort") or status.get("phase") == "Degraded":
        return "failed"
    if rollout.get("metadata", {}).get("generation") != status.get("observedGeneration"):
        return "progressing"
    if status.get("phase") == "Healthy":
        # Healthy with other stable pods than the current revision: the switch is not done yet.
        same = status.get("stableRS") == status.get("currentPodHash")
        return "healthy" if same else "progressing"
    return (status.get("phase") or "progressing").lower()


def watch(get_rollout: Callable[[], dict[str, Any]], timeout_s: float, interval_s: float = 15,
          progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Poll the Rollout until healthy (returned) or failed (RolloutError); bounded by timeout_s."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        rollout = get_rollout()
        state = rollout_state(rollout)
        status = rollout.get("status") or {}
        line = f"rollout: {state} (step {status.get('currentStepIndex', '?')}, " \
               f"message: {status.get('message', '')})"
        if line != last:
            progress(line)
            last = line
        if state == "healthy":
            return rollout
        if state == "failed":
            raise RolloutError(f"the canary was aborted or degraded: {status.get('message', '')}; "
                               "Argo Rollouts sent all traffic back to the stable pods")
        if time.monotonic() >= deadline:
            raise RolloutError(f"the rollout did not finish within {timeout_s:.0f} s "
                               f"(last state: {state})")
        time.sleep(interval_s)


def get_rollout(kubeconfig: Path, env: str, root: Path | str = ".") -> Callable[[], dict]:
    def fetch() -> dict[str, Any]:
        return json.loads(kubectl(kubeconfig, "get", "rollouts.argoproj.io", ROLLOUT_NAME,
                                  "-n", namespace(env, root), "-o", "json",
                                  what=f"read the Rollout of {env}"))
    return fetch


# ---------------------------------------------------------------------------------------------
# Old generated ConfigMaps and Secrets: Argo CD keeps them (Prune=false), this removes them once
# no ReplicaSet can start a pod that reads them.

GENERATED_MARK = ("argocd.argoproj.io/compare-options", "IgnoreExtraneous")


def _pod_references(pod_spec: dict) -> set[tuple[str, str]]:
    refs = set()
    for c in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        for source in c.get("envFrom", []):
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if (source.get(key) or {}).get("name"):
                    refs.add((kind, source[key]["name"]))
        for var in c.get("env", []):
            value_from = var.get("valueFrom") or {}
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if (value_from.get(key) or {}).get("name"):
                    refs.add((kind, value_from[key]["name"]))
    for volume in pod_spec.get("volumes", []):
        if (volume.get("configMap") or {}).get("name"):
            refs.add(("ConfigMap", volume["configMap"]["name"]))
        if (volume.get("secret") or {}).get("secretName"):
            refs.add(("Secret", volume["secret"]["secretName"]))
    return refs


def stale_generated_config(objects: list[dict], rendered: list[dict]) -> list[tuple[str, str]]:
    """(kind, name) of every generated ConfigMap/Secret (marked IgnoreExtraneous) in `objects`
    (a namespace's ConfigMaps, Secrets, ReplicaSets, Deployments, Rollouts) that neither the
    rendered overlay nor any pod template there references: nothing can start a pod reading it."""
    referenced = {(d["kind"], d["metadata"]["name"]) for d in rendered
                  if d.get("kind") in ("ConfigMap", "Secret")}
    for doc in objects:
        template = ((doc.get("spec") or {}).get("template") or {}).get("spec")
        if template:
            referenced |= _pod_references(template)
    stale = []
    for doc in objects:
        annotations = doc.get("metadata", {}).get("annotations") or {}
        key = (doc.get("kind"), doc["metadata"]["name"])
        if (key[0] in ("ConfigMap", "Secret") and
                GENERATED_MARK[1] in str(annotations.get(GENERATED_MARK[0], ""))
                and key not in referenced):
            stale.append(key)
    return sorted(stale)


def prune_config(env: str, kubeconfig: Path, root: Path | str = ".", dry_run: bool = False
                 ) -> list[str]:
    """Delete the generated ConfigMaps/Secrets of an environment that nothing reads any more
    (the Rollout's revisionHistoryLimit bounds how many stay)."""
    ns = namespace(env, root)
    listed = json.loads(kubectl(kubeconfig, "get", "configmaps,secrets,replicasets,deployments,"
                                "rollouts.argoproj.io", "-n", ns, "-o", "json",
                                what=f"list the objects of {env}"))
    stale = stale_generated_config(listed.get("items", []),
                                   [d for d in yaml.safe_load_all(render(overlay_dir(
                                       env, Path(root)))) if d])
    lines = []
    for kind, name in stale:
        if not dry_run:
            kubectl(kubeconfig, "delete", kind.lower(), name, "-n", ns, "--ignore-not-found",
                    what=f"delete {kind}/{name} in {ns}")
        lines.append(f"rollout: {'would delete' if dry_run else 'deleted'} {kind}/{name} in {ns}")
    return lines or [f"rollout: {env}: no stale generated ConfigMap or Secret"]
