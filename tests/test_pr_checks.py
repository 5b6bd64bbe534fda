"""Pull requests the workflows open, under the one branch-protection rule of docs/workflows.md:
which token pushes them, `ci` dispatched where GitHub would start no workflow, the early refusal
of a workflow change GITHUB_TOKEN may not push, and the preflight before training."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from pipelines.ci.rules import load_workflow
from pipelines.ci.workflows import CI_CHECK, ci_workflow, render
from pipelines.release.checks import (
    PushToken,
    TokenError,
    push_token,
    refuse_workflow_push,
    request_ci,
    workflow_changes,
)
from pipelines.release.github import GitHub, GitHubError, GitHubSettingsError
from pipelines.release.retrain import unsupported_remote
from tests.conftest import ROOT, copy_repo, pipelines_cli, run
from tests.github_server import FakeGitHub

PY = [sys.executable, "-m", "pipelines"]
WORKFLOWS = ROOT / ".github/workflows"


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], repo).stdout.strip()


@pytest.fixture
def repo_with_origin(tmp_path):
    """A copy of the repository on main, pushed to a bare origin (GitHub's side of it)."""
    repo = copy_repo(tmp_path / "repo")
    git(repo, "branch", "-M", "main")
    origin = tmp_path / "origin.git"
    run(["git", "init", "--quiet", "--bare", str(origin)], tmp_path)
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "--quiet", "origin", "main")
    git(repo, "fetch", "--quiet", "origin")
    return repo, origin


def _branch(repo: Path, name: str, change: str, text: str = "# changed\n") -> str:
    git(repo, "switch", "--quiet", "-c", name)
    path = repo / change
    path.write_text(path.read_text() + text)
    git(repo, "commit", "--quiet", "-am", f"change {change}")
    git(repo, "push", "--quiet", "origin", name)
    return git(repo, "rev-parse", "HEAD")


def test_the_pr_token_is_promotion_token_when_set_else_github_token():
    assert push_token({"GITHUB_TOKEN": "g", "PROMOTION_TOKEN": "p"}) == PushToken("p",
                                                                                  "PROMOTION_TOKEN")
    assert push_token({"GITHUB_TOKEN": "g", "PROMOTION_TOKEN": ""}) == PushToken("g",
                                                                                "GITHUB_TOKEN")
    with pytest.raises(GitHubSettingsError, match="GITHUB_TOKEN not set .nor PROMOTION_TOKEN."):
        push_token({})


def test_a_pr_opened_with_github_token_gets_ci_dispatched_on_its_head(repo_with_origin):
    repo, origin = repo_with_origin
    head = _branch(repo, "promote/data-x", "data.dvc")
    with FakeGitHub(git_dir=origin) as fake:
        gh = GitHub(fake.repo, fake.token, fake.url)
        message = request_ci(gh, "promote/data-x", PushToken(fake.token, "GITHUB_TOKEN"))
        assert fake.dispatches == [{"workflow": "ci.yml", "ref": "promote/data-x", "sha": head,
                                    "inputs": {}}]
    assert "dispatched ci.yml on promote/data-x" in message


def test_a_pr_opened_with_promotion_token_starts_ci_itself(repo_with_origin):
    repo, origin = repo_with_origin
    _branch(repo, "promote/data-x", "data.dvc")
    with FakeGitHub(git_dir=origin) as fake:
        gh = GitHub(fake.repo, fake.token, fake.url)
        message = request_ci(gh, "promote/data-x", PushToken(fake.token, "PROMOTION_TOKEN"))
        assert fake.dispatches == []
    assert "runs on the pull request" in message


def test_dispatch_fails_where_ci_cannot_be_dispatched(repo_with_origin):
    """Without `workflow_dispatch` in ci.yml (as before), GitHub answers 422: the PR would wait
    for its required check forever, so the step fails instead."""
    repo, origin = repo_with_origin
    ci = ci_workflow()
    del ci["on"]["workflow_dispatch"]
    (repo / ".github/workflows/ci.yml").write_text(render(ci))
    git(repo, "switch", "--quiet", "-c", "revert/abc")
    git(repo, "commit", "--quiet", "-am", "ci without dispatch")
    git(repo, "push", "--quiet", "origin", "revert/abc")
    with FakeGitHub(git_dir=origin) as fake:
        gh = GitHub(fake.repo, fake.token, fake.url)
        with pytest.raises(GitHubError, match="422 .*workflow_dispatch"):
            request_ci(gh, "revert/abc", PushToken(fake.token, "GITHUB_TOKEN"))


def test_one_required_check_covers_normal_promotion_and_revert_prs():
    """The recipe's one required context is ci's job; each kind of PR gets it: a normal PR from
    its pull_request event, a PR opened with PROMOTION_TOKEN likewise, and one opened with
    GITHUB_TOKEN (propose, revert) from the dispatch those steps send."""
    docs = (ROOT / "docs/workflows.md").read_text()
    recipe = docs[docs.index("## Branch protection"):]
    required = re.findall(r"Require status checks to pass: `([^`]+)`", recipe)
    assert required == [CI_CHECK]
    ci = load_workflow(WORKFLOWS / "ci.yml")
    (job,) = ci["jobs"].values()
    assert job["name"] == CI_CHECK
    assert {"pull_request", "workflow_dispatch"} <= set(ci["on"])
    assert "workflow_dispatch" not in job["if"] and "event_name == 'push'" in job["if"]
    # The steps that open PRs hand both tokens over, and may dispatch (actions: write).
    retrain = load_workflow(WORKFLOWS / "retrain.yml")
    rollout = load_workflow(WORKFLOWS / "rollout.yml")
    for job_ in (retrain["jobs"]["propose"], rollout["jobs"]["revert"]):
        opener = job_["steps"][-1]
        assert set(opener["env"]) >= {"GITHUB_TOKEN", "PROMOTION_TOKEN"}
        assert opener["env"]["PROMOTION_TOKEN"] == "${{ secrets.PROMOTION_TOKEN }}"
        assert job_["permissions"]["actions"] == "write"
    # `moderation/gate` exists only on promotion commits: requiring it would block every other PR
    assert "moderation/gate" not in required


def test_revert_runs_only_when_the_canary_step_failed():
    rollout = load_workflow(WORKFLOWS / "rollout.yml")
    apply_job, revert = rollout["jobs"]["apply"], rollout["jobs"]["revert"]
    watch = next(s for s in apply_job["steps"] if s.get("id") == "watch")
    assert watch["run"] == "python -m pipelines rollout watch"
    assert apply_job["outputs"]["canary"] == "${{ steps.watch.outcome }}"
    assert revert["if"] == "${{ failure() && needs.apply.outputs.canary == 'failure' }}"
    # set-up steps (credentials, install, apply) come before the watch and carry no id: their
    # failure leaves the watch skipped, its outcome 'skipped', and no revert
    assert apply_job["steps"].index(watch) == len(apply_job["steps"]) - 1


def test_a_workflow_change_is_refused_early_with_github_token_only(repo_with_origin):
    repo, _ = repo_with_origin
    _branch(repo, "data/with-stage-dep", ".github/workflows/retrain.yml", "# make workflows\n")
    changed = workflow_changes("origin/main", root=repo)
    assert changed == [".github/workflows/retrain.yml"]
    with pytest.raises(TokenError, match="Workflows: write") as raised:
        refuse_workflow_push(changed, "GITHUB_TOKEN")
    assert "GitHub App installation token per run" in str(raised.value)
    refuse_workflow_push(changed, "PROMOTION_TOKEN")
    assert workflow_changes("origin/main", "origin/main", root=repo) == []


def _s3_remote_config(repo: Path, url: str = "s3://bucket/dvc") -> None:
    run(["dvc", "remote", "add", "-d", "-f", "origin", url], repo)
    git(repo, "commit", "--quiet", "-am", f"remote {url}")


def test_preflight_refuses_a_workflow_change_before_training(repo_with_origin):
    repo, _ = repo_with_origin
    _s3_remote_config(repo)
    _branch(repo, "data/x", ".github/workflows/retrain.yml")
    refused = pipelines_cli(["retrain", "preflight"], repo, check=False, DEFAULT_BRANCH="main",
                            PROMOTION_TOKEN_SET="false")
    assert refused.returncode == 1
    assert "changes .github/workflows/retrain.yml" in refused.stderr
    passed = pipelines_cli(["retrain", "preflight"], repo, DEFAULT_BRANCH="main",
                           PROMOTION_TOKEN_SET="true")
    assert "preflight passed" in passed.stdout


def test_preflight_refuses_the_in_repo_remote_in_seconds_not_after_training(repo_with_origin):
    repo, _ = repo_with_origin
    began = time.monotonic()
    result = run(PY + ["retrain", "preflight"], repo, check=False, DEFAULT_BRANCH="main")
    assert result.returncode == 1
    assert "the default DVC remote is the in-repo folder storage/" in result.stderr
    assert time.monotonic() - began < 120  # generous: the machine is shared; training is 30+ min
    assert not (repo / "models/candidate").exists()


def test_preflight_runs_before_any_training_step():
    evaluate = load_workflow(WORKFLOWS / "retrain.yml")["jobs"]["evaluate"]
    runs = [s.get("run") for s in evaluate["steps"] if "run" in s]
    assert runs.index("python -m pipelines retrain preflight") < runs.index("make data")
    assert runs[:2] == ["make venv", "python -m pipelines retrain preflight"]


@pytest.mark.parametrize(("url", "refused"), [
    ("s3://bucket/dvc", False), ("S3://bucket/dvc", False), ("storage", False),
    ("gs://bucket/dvc", True), ("azure://container/dvc", True), ("ssh://host/dvc", True),
    ("gdrive://folder", True), ("http://host/dvc", True),
])
def test_only_s3_remotes_are_accepted(url, refused):
    reason = unsupported_remote(url)
    assert (reason is not None) == refused
    if refused:
        assert "support s3:// only" in reason and "endpointurl" in reason


def test_preflight_refuses_a_gs_remote_with_the_fix(repo_with_origin):
    repo, _ = repo_with_origin
    _s3_remote_config(repo, "gs://bucket/dvc")
    result = pipelines_cli(["retrain", "preflight"], repo, check=False, DEFAULT_BRANCH="main")
    assert result.returncode == 1
    assert "gs:// remote; the workflows support s3:// only" in result.stderr


def test_use_remote_refuses_an_unsupported_remote_and_changes_nothing(repo_with_origin):
    repo, _ = repo_with_origin
    before = (repo / ".dvc/config").read_text()
    result = pipelines_cli(["retrain", "use-remote", "azure://container/dvc"], repo, check=False)
    assert result.returncode == 1
    assert "azure:// remote; the workflows support s3:// only" in result.stderr
    assert (repo / ".dvc/config").read_text() == before


def _clone_without_local_objects(repo: Path, dest: Path) -> Path:
    """What a new clone of repo has: its files and .dvc/config, no DVC cache, no demo remote."""
    clone = copy_repo(dest)
    for rel in (".dvc/config",):
        (clone / rel).write_text((repo / rel).read_text())
    run(["rm", "-rf", ".dvc/storage", ".dvc/cache"], clone)
    return clone


@pytest.mark.slow
def test_use_remote_uploads_the_production_model_that_a_plain_push_leaves_out(tmp_path,
                                                                               s3_server):
    import boto3

    from tests.conftest import S3_ENV, s3_remote

    # the documented shortcut: a fresh clone, `dvc remote add -d -f`, plain `dvc push`
    plain = copy_repo(tmp_path / "plain")
    s3_remote(plain, s3_server, "plain")
    run(["dvc", "push"], plain, check=False, **S3_ENV)
    # the make target: `make remote URL=... ENDPOINT=...`
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1"
                 ).create_bucket(Bucket="seeded")
    seeded = copy_repo(tmp_path / "seeded")
    out = pipelines_cli(["retrain", "use-remote", "s3://seeded/dvc", "--endpoint-url", s3_server],
                        seeded, **S3_ENV)
    assert "holds data.dvc, models/production.dvc" in out.stdout
    for repo, pulls in ((plain, False), (seeded, True)):
        clone = _clone_without_local_objects(repo, tmp_path / f"clone-{repo.name}")
        result = run(["dvc", "pull", "models/production.dvc", "data.dvc"], clone, check=False,
                     **S3_ENV)
        assert (result.returncode == 0) == pulls, result.stdout + result.stderr
