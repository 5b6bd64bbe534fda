"""The rollout workflow's steps: which overlays a merge changed, cluster access, kubectl apply
against a cluster that does not answer, the canary watch, and the revert pull request."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest
import yaml

from pipelines.deploy.pins import read_pin, set_image
from pipelines.deploy.rollout import (
    RolloutError,
    all_overlays,
    cluster_access,
    rollout_state,
    watch,
)
from tests.conftest import copy_repo, free_port, pipelines_cli, run
from tests.github_server import FakeGitHub

PY = [sys.executable, "-m", "pipelines"]


def git(repo, *args):
    return run(["git", *args], repo).stdout.strip()


@pytest.fixture
def released(tmp_path):
    """A copy of the repository whose last commit is a release: production pin + pointer."""
    repo = copy_repo(tmp_path / "repo")
    git(repo, "branch", "-M", "main")
    origin = tmp_path / "origin.git"
    run(["git", "init", "--quiet", "--bare", str(origin)], tmp_path)
    git(repo, "remote", "add", "origin", str(origin))
    set_image("production", tag="transformer-new-12345678", root=repo)
    pointer = repo / "models/production.yaml"
    pointer.write_text(pointer.read_text().replace("version: baseline-4d4a25b1-f67fb708",
                                                   "version: transformer-new"))
    (repo / "data.dvc").write_text((repo / "data.dvc").read_text() + "# new data\n")
    git(repo, "commit", "--quiet", "-am", "release transformer-new")
    git(repo, "push", "--quiet", "origin", "main")
    return repo, origin


def test_every_overlay_is_applied_so_a_cancelled_pending_run_loses_no_change(released):
    """Merge B (production pin, the release) queues behind a running rollout; merge C (staging
    only) replaces B's pending run (one pending run per concurrency group). C's run must still
    apply production: a diff of HEAD^..HEAD would apply staging alone."""
    repo, _ = released
    overlay = repo / "k8s/overlays/staging/kustomization.yaml"
    overlay.write_text(overlay.read_text() + "# staging-only change\n")
    git(repo, "commit", "--quiet", "-am", "staging: a later merge")
    assert all_overlays(repo) == ["production", "staging"]
    result = pipelines_cli(["rollout", "apply"], repo, check=False,
                           KUBE_CONFIG=base64.b64encode(_unanswering_kubeconfig().encode()).decode())
    assert result.returncode == 1
    assert "apply k8s/overlays/production" in result.stderr  # the change of the cancelled run


def _unanswering_kubeconfig(server: str | None = None) -> str:
    server = server or f"https://127.0.0.1:{free_port()}"
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ci",
        "clusters": [{"name": "ci", "cluster": {"server": server,
                                                "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "ci", "context": {"cluster": "ci", "user": "ci"}}],
        "users": [{"name": "ci", "user": {"token": "t"}}]})


def test_apply_without_cluster_settings_says_which_to_set(tmp_path):
    result = run(PY + ["rollout", "apply", "--env", "staging"], tmp_path, check=False,
                 PYTHONPATH=str(copy_repo(tmp_path / "r")), KUBE_CONFIG="", EKS_CLUSTER="")
    assert result.returncode == 1
    assert "set the secret KUBE_CONFIG (base64 kubeconfig) or the variable EKS_CLUSTER" in \
        result.stderr


def test_a_kube_config_that_is_not_base64_is_refused():
    with pytest.raises(RolloutError, match="KUBE_CONFIG is not base64"), \
            cluster_access({"KUBE_CONFIG": "not base64!"}):
        pass


def test_apply_renders_the_overlay_and_fails_clearly_when_the_cluster_does_not_answer(released):
    repo, _ = released
    server = f"https://127.0.0.1:{free_port()}"
    kubeconfig = _unanswering_kubeconfig(server)
    result = pipelines_cli(["rollout", "apply"], repo, check=False,
                           KUBE_CONFIG=base64.b64encode(kubeconfig.encode()).decode())
    assert result.returncode == 1
    assert "apply k8s/overlays/production" in result.stderr
    assert f"127.0.0.1:{server.rsplit(':', 1)[1]}" in result.stderr


def rollout(phase, *, abort=False, stable="a", current="b", generation=2, observed=2,
            message=""):
    return {"metadata": {"generation": generation},
            "status": {"phase": phase, "abort": abort, "stableRS": stable,
                       "currentPodHash": current, "observedGeneration": observed,
                       "currentStepIndex": 3, "message": message}}


@pytest.mark.parametrize(("state", "expected"), [
    (rollout("Healthy", stable="b", current="b"), "healthy"),
    (rollout("Healthy", stable="a", current="b"), "progressing"),
    (rollout("Paused"), "paused"),
    (rollout("Degraded"), "failed"),
    (rollout("Progressing", abort=True), "failed"),
    (rollout("Healthy", stable="b", current="b", observed=1), "progressing"),
], ids=["promoted", "stable-is-old", "paused", "degraded", "aborted", "not-observed"])
def test_rollout_state_reads_argo_rollouts_status(state, expected):
    assert rollout_state(state) == expected


def test_watch_returns_once_the_new_revision_is_stable():
    states = iter([rollout("Progressing"), rollout("Paused"),
                   rollout("Healthy", stable="b", current="b")])
    lines = []
    result = watch(lambda: next(states), timeout_s=5, interval_s=0, progress=lines.append)
    assert rollout_state(result) == "healthy"
    assert [line.split(" ")[1] for line in lines] == ["progressing", "paused", "healthy"]


def test_watch_fails_on_an_aborted_canary_and_on_timeout():
    with pytest.raises(RolloutError, match="aborted or degraded: analysis failed"):
        watch(lambda: rollout("Degraded", message="analysis failed"), 5, 0, lambda _: None)
    with pytest.raises(RolloutError, match="did not finish within 0 s"):
        watch(lambda: rollout("Paused"), 0, 0, lambda _: None)


def test_revert_pushes_a_branch_restoring_pins_and_pointer_and_opens_one_pr(released):
    repo, origin = released
    failed = git(repo, "rev-parse", "HEAD")
    with FakeGitHub(git_dir=origin) as gh:
        env = {"GITHUB_API_URL": gh.url, "GITHUB_REPOSITORY": gh.repo, "GITHUB_TOKEN": gh.token,
               "FAILED_SHA": failed}
        first = pipelines_cli(["rollout", "revert"], repo, **env)
        again = pipelines_cli(["rollout", "revert"], repo, **env)
        pulls, dispatches = gh.pulls(), gh.dispatches
    branch = f"revert/{failed[:12]}"
    # opened with GITHUB_TOKEN, the PR starts no workflow: ci is dispatched on its branch
    assert [(d["workflow"], d["ref"]) for d in dispatches] == [("ci.yml", branch)] * 2
    assert dispatches[-1]["sha"] == git(origin, "rev-parse", branch)  # the head the PR shows
    assert f"dispatched ci.yml on {branch}" in first.stdout
    assert f"pushed {branch}; created pull request #1" in first.stdout
    assert "updated pull request #1" in again.stdout and len(pulls) == 1
    changed = git(origin, "diff", "--name-only", "main", branch).splitlines()
    assert changed == ["k8s/overlays/production/kustomization.yaml", "models/production.yaml"]
    assert git(origin, "diff", "--stat", f"{failed}^", branch, "--", *changed) == ""
    assert "data.dvc" not in changed  # the data that came with the merge stays
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert read_pin("production", repo).tag == "transformer-new-12345678"
    assert subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True,
                          text=True).stdout.count("\n") == 1


def test_revert_with_promotion_token_opens_the_pr_with_it_and_dispatches_nothing(released):
    repo, origin = released
    failed = git(repo, "rev-parse", "HEAD")
    with FakeGitHub(git_dir=origin, token="promotion-token") as gh:
        result = pipelines_cli(["rollout", "revert"], repo, GITHUB_API_URL=gh.url,
                               GITHUB_REPOSITORY=gh.repo, GITHUB_TOKEN="workflow-token",
                               PROMOTION_TOKEN="promotion-token", FAILED_SHA=failed)
        pulls, dispatches = gh.pulls(), gh.dispatches
    assert len(pulls) == 1 and dispatches == []  # the fake accepts only the promotion token
    assert "ci: runs on the pull request" in result.stdout
