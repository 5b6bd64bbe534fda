"""The retrain entry points' refusals: what each says when its inputs are missing or stale
(the whole path runs in tests/e2e/test_workflows_with_act.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from pipelines.core.decision import Decision
from pipelines.core.production import read_pointer
from pipelines.release.retrain import nothing_to_propose
from tests.conftest import ROOT, S3_ENV, pipelines_cli, run, s3_remote

PY = [sys.executable, "-m", "pipelines"]


def decision(verdict="promote", version="transformer-abc-123", failed=()):
    """decision.json as compare writes it."""
    return {"verdict": verdict, "bootstrap": False, "failed": list(failed),
            "reasons": [{"check": c, "passed": False, "message": "below"} for c in failed],
            "candidate_version": version, "production_version": "baseline-old"}


def production(version):
    """The repository's production record, naming another version."""
    return read_pointer(ROOT / "models/production.yaml").model_copy(update={"version": version})


@pytest.mark.parametrize(("made", "running", "reason"), [
    (decision("reject", failed=["floor.macro_f1"]), None,
     "the gate rejected transformer-abc-123 (floor.macro_f1)"),
    (decision(), "transformer-abc-123",
     "production already runs transformer-abc-123 (models/production.yaml)"),
    (decision("no significant change"), "baseline-old", None),
    (decision(), None, None),
], ids=["reject", "already-production", "no-change-still-proposed", "bootstrap"])
def test_what_is_proposed(made, running, reason):
    assert nothing_to_propose(Decision.model_validate(made),
                              running and production(running)) == reason


def _write(repo, rel, payload):
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def test_propose_without_a_comparison_names_the_missing_file(fresh_repo):
    result = run(PY + ["retrain", "propose", "--source-branch", "b"], fresh_repo, check=False)
    assert result.returncode == 1
    assert "reports/compare/decision.json not found: run `make compare` first" in result.stderr


def test_propose_without_github_settings_fails_before_changing_anything(fresh_repo):
    _write(fresh_repo, "reports/compare/decision.json", decision())
    result = pipelines_cli(["retrain", "propose", "--source-branch", "b"], fresh_repo, check=False,
                           GITHUB_REPOSITORY="", GITHUB_TOKEN="")
    assert result.returncode == 2  # a settings error, like every command's
    assert "GITHUB_TOKEN not set (nor PROMOTION_TOKEN)" in result.stderr
    assert run(["git", "status", "--porcelain"], fresh_repo).stdout == ""


def test_propose_refuses_a_candidate_whose_load_test_did_not_run(fresh_repo):
    _write(fresh_repo, "reports/compare/decision.json",
           decision(version="baseline-4d4a25b1-f67fb708x"))
    # The production weights stand in for a restored candidate of another version.
    run(["cp", "-r", "models/production", "models/candidate"], fresh_repo)
    result = pipelines_cli(["retrain", "propose", "--source-branch", "b"], fresh_repo, check=False,
                           GITHUB_REPOSITORY="a/b", GITHUB_TOKEN="t")
    assert result.returncode == 1
    assert "models/candidate holds baseline-4d4a25b1-f67fb708 but" in result.stderr
    _write(fresh_repo, "reports/compare/decision.json",
           decision(version="baseline-4d4a25b1-f67fb708"))
    result = pipelines_cli(["retrain", "propose", "--source-branch", "b"], fresh_repo, check=False,
                           GITHUB_REPOSITORY="a/b", GITHUB_TOKEN="t")
    assert "nothing to propose: production already runs" in result.stdout


def test_restore_names_the_outputs_missing_from_the_dvc_remote(fresh_repo):
    # The committed dvc.lock names outputs of a run that never pushed them to this remote.
    _write(fresh_repo, "reports/compare/decision.json", decision(version="transformer-other"))
    result = pipelines_cli(["retrain", "restore"], fresh_repo, check=False)
    assert result.returncode == 1
    assert "`dvc pull` failed" in result.stderr and "models/candidate" in result.stderr
    assert "retrain push-outputs` puts these outputs in the DVC remote" in result.stderr


def test_image_is_not_built_for_a_rejected_candidate(fresh_repo):
    _write(fresh_repo, "reports/compare/decision.json",
           decision("reject", failed=["non_inferiority.macro_f1"]))
    result = pipelines_cli(["retrain", "image"], fresh_repo, DOCKER_HOST="unix:///nonexistent.sock")
    assert "image: nothing to build: the gate rejected" in result.stdout


def test_push_outputs_refuses_to_put_model_weights_into_git(fresh_repo):
    result = pipelines_cli(["retrain", "push-outputs"], fresh_repo, check=False)
    assert result.returncode == 1
    assert "the default DVC remote is the in-repo folder storage/" in result.stderr
    assert "dvc remote add -d -f origin s3://" in result.stderr


def test_push_outputs_sends_outputs_and_run_cache_to_the_object_store(smoke_repo, tmp_path,
                                                                      s3_server):
    import boto3

    repo = Path(shutil.copytree(smoke_repo, tmp_path / "repo", symlinks=True))
    s3_remote(repo, s3_server, "push-outputs")
    result = run(PY + ["retrain", "push-outputs"], repo, **S3_ENV)
    assert "pipeline outputs and run-cache pushed to the DVC remote" in result.stdout
    s3 = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket="push-outputs", Prefix="dvc/") for o in page.get("Contents", [])]
    assert any(k.startswith("dvc/runs/") for k in keys)  # the run-cache
    candidate = json.loads((repo / "models/candidate/metadata.json").read_text())
    # In a fresh clone with nothing but git: dvc.lock's stages come back from the run-cache.
    clone = tmp_path / "clone"
    run(["git", "clone", "--quiet", str(repo), str(clone)], tmp_path)
    shutil.copy2(repo / "dvc.lock", clone / "dvc.lock")
    shutil.copy2(repo / "params.yaml", clone / "params.yaml")
    shutil.copy2(repo / ".dvc/config", clone / ".dvc/config")
    repro = run(["dvc", "repro", "--pull", "train"], clone, **S3_ENV)
    assert "Running stage 'train'" not in repro.stdout, repro.stdout
    assert json.loads((clone / "models/candidate/metadata.json").read_text()) == candidate


def test_the_image_step_fails_clearly_without_a_docker_engine(fresh_repo):
    _write(fresh_repo, "reports/compare/decision.json", decision(version="transformer-new"))
    result = pipelines_cli(["retrain", "image"], fresh_repo, check=False,
                           DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert result.returncode == 1
    assert "no Docker engine reachable" in result.stderr
    assert "bentoml containerize` needs Docker" in result.stderr


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "ghcr.io/example-org/moderation-service"),
    ({"GITHUB_REPOSITORY_OWNER": "Acme"}, "ghcr.io/acme/moderation-service"),
    ({"GITHUB_REPOSITORY_OWNER": "acme", "IMAGE_NAME": "registry.acme.io/ml/moderation"},
     "registry.acme.io/ml/moderation"),
], ids=["template", "repository-owner", "configured"])
def test_the_image_name_follows_the_repository_owner_unless_configured(env, expected):
    from pipelines.release.retrain import image_name

    assert image_name(env=env) == expected


@pytest.mark.parametrize(("made", "expected", "said"), [
    (decision(version="baseline-4d4a25b1-f67fb708"), "propose=false",
     "plan: nothing to propose: production already runs baseline-4d4a25b1-f67fb708"),
    (decision(verdict="reject", failed=("non_inferiority.macro_f1",)), "propose=false",
     "plan: nothing to propose: the gate rejected"),
    (decision(), "propose=true", "plan: propose transformer-abc-123"),
], ids=["after-the-merge", "reject", "new-candidate"])
def test_plan_tells_the_workflow_whether_the_propose_job_runs(fresh_repo, tmp_path, made,
                                                              expected, said):
    _write(fresh_repo, "reports/compare/decision.json", made)
    out = tmp_path / "github_output"
    result = pipelines_cli(["retrain", "plan", "--out", str(out)], fresh_repo)
    assert out.read_text() == f"{expected}\n"
    assert said in result.stdout


def _candidate_ready_to_propose(repo, version="baseline-4d4a25b1-f67fb70x"):
    """A candidate of a version production does not run, judged and load-tested."""
    run(["cp", "-r", "models/production", "models/candidate"], repo)
    meta = repo / "models/candidate/metadata.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "version": version}))
    _write(repo, "reports/compare/decision.json", decision(version=version))
    _write(repo, "reports/loadtest/summary.json",
           {"model_version": version, "verdict": {"passed": True}})


def test_propose_refuses_without_the_digest_the_image_step_recorded(fresh_repo):
    _candidate_ready_to_propose(fresh_repo)
    result = pipelines_cli(["retrain", "propose", "--source-branch", "b"], fresh_repo, check=False,
                           GITHUB_REPOSITORY="a/b", GITHUB_TOKEN="t")
    assert result.returncode == 1
    assert ("reports/image/facts.json not found: the image step writes it after its push "
            "(`python -m pipelines retrain image`") in result.stderr
    assert "pinned by the pushed image's digest" in result.stderr
    assert "promote/b" not in run(["git", "branch", "--list"], fresh_repo).stdout


def test_the_promotion_pins_the_digest_of_the_candidates_pushed_image(tmp_path):
    from pipelines.release.retrain import RetrainError, pushed_image

    facts = tmp_path / "facts.json"
    digest = "sha256:" + "cd" * 32
    facts.write_text(json.dumps({"reference": "ghcr.io/acme/moderation-service:v1-abc",
                                 "digest": digest, "bento": "moderation:v1-abc"}))
    assert pushed_image("v1-abc", facts) == ("ghcr.io/acme/moderation-service", digest)
    with pytest.raises(RetrainError, match="describes moderation:v1-abc, not the candidate's "
                                           "moderation:v2-abc"):
        pushed_image("v2-abc", facts)
    facts.write_text(json.dumps({"reference": "ghcr.io/acme/moderation-service:v1-abc",
                                 "digest": "", "bento": "moderation:v1-abc"}))
    with pytest.raises(RetrainError, match="digest '' is not sha256:<64 hex characters> "
                                           r"\(was the image pushed\?"):
        pushed_image("v1-abc", facts)
