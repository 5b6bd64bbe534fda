"""The rollout workflow's steps (push model, beside Argo CD): apply the overlays a merge changed,
watch the canary until it is promoted or aborted, and open the revert pull request on failure."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from pipelines.deploy import K8S_DIR, overlay_dir
from pipelines.kustomize import render, venv_tool

ROLLOUT_NAME = "moderation"  # k8s/components/rollout-argo/rollout.yaml
RELEASE_FILES = ("models/production.yaml", "models/production.dvc")
REVERT_PREFIX = "revert/"


class RolloutError(RuntimeError):
    """A rollout step failed; the message names the overlay, the cluster or the rollout."""


def changed_overlays(base: str = "HEAD^", head: str = "HEAD", root: Path | str = ".") -> list[str]:
    """Environments with a file under k8s/overlays/<env>/ changed between base and head."""
    from pipelines.gitops import changed_files

    prefix = f"{K8S_DIR.as_posix()}/overlays/"
    envs = {f[len(prefix):].split("/")[0] for f in changed_files(root, base, head)
            if f.startswith(prefix) and f.count("/") >= 3}
    return sorted(e for e in envs if (Path(root) / prefix / e / "kustomization.yaml").exists())


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
    try:
        result = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                                timeout=timeout, check=False)
    except FileNotFoundError:
        raise RolloutError(f"{what}: {cmd[0]} is not installed") from None
    if result.returncode != 0:
        raise RolloutError(f"{what}: `{' '.join(cmd[:3])} ...` failed: "
                           f"{(result.stderr or result.stdout).strip()}")
    return result.stdout


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


def revert_files(failed: str, root: Path | str = ".") -> list[str]:
    """The release files (overlay pins, model pointer) the failed commit changed."""
    from pipelines.gitops import changed_files

    prefix = f"{K8S_DIR.as_posix()}/overlays/"
    return [f for f in changed_files(root, f"{failed}^", failed)
            if (f.startswith(prefix) and f.endswith("/kustomization.yaml"))
            or f in RELEASE_FILES]


def revert(failed: str, remote: str = "origin", token: str | None = None, gh=None,
           root: Path | str = ".") -> dict[str, Any] | None:
    """Push revert/<sha> restoring the pins and pointer to before `failed`, and open its PR.
    Only the release files go back: data and code that came with the merge stay."""
    from pipelines.github import GitHub, open_or_update_pr
    from pipelines.gitops import commit_files, detached_worktree, git, head, push

    failed = git(root, "rev-parse", failed).strip()
    files = revert_files(failed, root)
    if not files:
        print(f"rollout: {failed[:12]} changed no overlay pin or model pointer; nothing to revert")
        return None
    gh = gh or GitHub.from_env()
    base = head(root)
    short = failed[:12]
    with detached_worktree(base, root) as tree:
        for rel in files:
            existed = subprocess.run(["git", "-C", str(tree), "cat-file", "-e",
                                      f"{failed}^:{rel}"], capture_output=True).returncode == 0
            if existed:
                git(tree, "checkout", f"{failed}^", "--", rel)
            else:
                (tree / rel).unlink(missing_ok=True)
        message = (f"Revert the release of {short}: its rollout failed\n\n"
                   f"Restores {', '.join(files)} to {failed}^.\n\nDeploy-Action: rollback\n")
        commit = commit_files(tree, base, files, message)
        branch = f"{REVERT_PREFIX}{short}"
        push(tree, commit, branch, remote, token)
    body = (f"The rollout of {failed} failed (canary aborted, degraded or timed out), so this "
            f"puts back what ran before it:\n\n" + "\n".join(f"- `{f}`" for f in files)
            + "\n\nMerging it rolls production back; data and code from that merge stay.\n")
    action, pull = open_or_update_pr(gh, branch, gh.default_branch(),
                                     f"Revert the release of {short} (rollout failed)", body)
    print(f"rollout: pushed {branch}; {action} pull request #{pull['number']} {pull['html_url']}")
    return {"branch": branch, "commit": commit, "files": files, "action": action, "pull": pull}
