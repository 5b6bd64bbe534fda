"""`make doctor` on a fork: what is configured, what is missing, and the exact fix."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.ci.doctor import Check, diagnose
from pipelines.cli import app
from tests.github_server import FakeGitHub

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_IMAGE = "ghcr.io/OWNER/moderation-service"
TEMPLATE_REPO_URL = "https://github.com/OWNER/REPO.git"


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)


def _overlay(root: Path, env: str, images: list[dict]) -> None:
    path = root / "k8s/overlays" / env / "kustomization.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1",
                                    "kind": "Kustomization", "resources": ["../../base"],
                                    "images": images}))


def _argo_app(root: Path, repo_url: str) -> None:
    path = root / "k8s/argocd/application.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "moderation-production"},
        "spec": {"source": {"repoURL": repo_url, "path": "k8s/overlays/production"}}}))


@pytest.fixture(scope="module")
def template_clone(tmp_path_factory) -> Path:
    """A fresh copy of the template as a fork gets it: placeholders everywhere."""
    root = tmp_path_factory.mktemp("fork")
    for rel in ("dvc.yaml", "params.yaml", "data.dvc", "models/production.yaml"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, root / rel)
    shutil.copytree(ROOT / ".github", root / ".github")
    _run("git", "init", "-q", cwd=root)
    _run(sys.executable, "-m", "dvc", "init", "-q", cwd=root)
    (root / ".dvc/storage").mkdir()
    shutil.copy(ROOT / ".dvc/config", root / ".dvc/config")  # the bundled demo remote
    for env in ("staging", "production"):
        _overlay(root, env, [{"name": "moderation-service", "newName": TEMPLATE_IMAGE,
                              "newTag": "0.0.0"}])
    _argo_app(root, TEMPLATE_REPO_URL)
    return root


@pytest.fixture
def fork(template_clone, tmp_path) -> Path:
    root = tmp_path / "fork"
    shutil.copytree(template_clone, root, symlinks=True)
    return root


def _configure(root: Path, remote_dir: Path) -> None:
    remote_dir.mkdir()
    _run("git", "remote", "add", "origin", "git@github.com:acme/moderation.git", cwd=root)
    _dvc_config(root, "[core]\n    remote = origin\n"
                      f"['remote \"origin\"']\n    url = {remote_dir}\n")
    for env in ("staging", "production"):
        _overlay(root, env, [{"name": "moderation-service",
                              "newName": "ghcr.io/acme/moderation-service", "newTag": "1.4.2"}])
    _argo_app(root, "https://github.com/acme/moderation.git")


def _dvc_config(root: Path, text: str) -> None:
    (root / ".dvc/config").write_text(text)


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_fresh_fork_is_told_every_missing_setting_and_how_to_fix_it(fork):
    checks = _by_name(diagnose(fork, env={}))
    missing = {name for name, c in checks.items() if c.status == "missing"}
    assert missing == {"GitHub repository", "DVC remote", "Argo CD app moderation-production"}
    assert "git remote add origin" in checks["GitHub repository"].detail
    # The retrain workflow pushes the image under the repository owner and pins that name.
    assert checks["image pin production"].status == "warn"
    assert "`ghcr.io/OWNER/moderation-service` is a template placeholder" in \
        checks["image pin production"].detail
    assert "k8s/argocd/application.yaml" in checks["Argo CD app moderation-production"].detail
    assert "refuses to push model weights into git" in checks["DVC remote"].detail
    assert "dvc remote add -d -f origin s3://" in checks["DVC remote"].detail
    assert checks["repository settings"].status == "warn"
    assert checks["Actions may open PRs"].status == "warn"
    assert checks["workflows"].status == "ok"


def test_doctor_cli_exits_non_zero_and_lists_the_missing_lines(fork, monkeypatch):
    for var in ("GITHUB_REPOSITORY", "GITHUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(app, ["doctor", "--root", str(fork), "--offline"])
    assert result.exit_code == 1
    assert sum(line.startswith("MISSING") for line in result.output.splitlines()) == 3
    assert "3 setting(s) missing" in result.output


def test_a_configured_fork_passes_with_its_settings_checked_through_the_api(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.secrets = {"MODERATION_DB_URL"}
        server.variables = {"AWS_ROLE_ARN": "arn:aws:iam::1:role/x", "AWS_REGION": "eu-west-1",
                            "DRIFT_CHECK": "enabled"}
        server.workflow_permissions["can_approve_pull_request_reviews"] = True
        server.workflows = _active_workflows(fork)
        env = {"GITHUB_TOKEN": server.token, "GITHUB_API_URL": server.url}
        checks = _by_name(diagnose(fork, env=env))
    assert [c for c in checks.values() if c.status == "missing"] == []
    assert checks["GitHub repository"].detail == "acme/moderation"
    assert checks["DVC remote"].detail.endswith("(reachable)")
    assert checks["image pin production"].detail == "ghcr.io/acme/moderation-service:1.4.2"
    assert checks["secret MODERATION_DB_URL"].status == "ok"
    assert checks["secret KUBE_CONFIG"].status == "warn"  # Argo CD mode: not needed


def _active_workflows(root: Path) -> list[dict]:
    return [{"name": p.stem, "path": f".github/workflows/{p.name}", "state": "active"}
            for p in sorted((root / ".github/workflows").glob("*.yml"))]


def _diagnose(fork: Path, server: FakeGitHub, **env: str) -> dict[str, Check]:
    env = {"GITHUB_TOKEN": server.token, "GITHUB_API_URL": server.url, **env}
    return _by_name(diagnose(fork, env=env, reach=False))


def _pr_check(fork: Path, server: FakeGitHub, token: str | None = None) -> Check:
    env = {"GITHUB_TOKEN": token or server.token, "GITHUB_API_URL": server.url}
    return _by_name(diagnose(fork, env=env, reach=False))["Actions may open PRs"]


def test_actions_not_allowed_to_open_prs_is_missing_with_the_fix(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:  # GitHub's default: not allowed
        check = _pr_check(fork, server)
        assert ("GET", "/repos/acme/moderation/actions/permissions/workflow") in server.requests
    assert check.status == "missing" and "POST /pulls would answer 403" in check.detail
    assert "repos/acme/moderation/actions/permissions/workflow" in check.detail
    assert "-F can_approve_pull_request_reviews=true" in check.detail


def test_a_promotion_token_secret_makes_the_pr_permission_unnecessary(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.secrets = {"PROMOTION_TOKEN"}
        check = _pr_check(fork, server)
    assert check.status == "ok" and "PROMOTION_TOKEN" in check.detail


def test_a_token_that_cannot_read_the_pr_permission_is_a_warning(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.non_admin_tokens = {"read-only"}
        check = _pr_check(fork, server, token="read-only")
    assert check.status == "warn" and "403 Resource not accessible by integration" in check.detail


def test_drift_check_enabled_without_its_database_url_is_missing(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.variables = {"DRIFT_CHECK": "enabled"}
        checks = _by_name(diagnose(fork, env={"GITHUB_TOKEN": server.token,
                                              "GITHUB_API_URL": server.url}, reach=False))
        server.variables = {}
        off = _by_name(diagnose(fork, env={"GITHUB_TOKEN": server.token,
                                           "GITHUB_API_URL": server.url}, reach=False))
    assert checks["secret MODERATION_DB_URL"].status == "missing"
    assert off["secret MODERATION_DB_URL"].status == "warn"


def test_push_mode_without_cluster_credentials_is_missing(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.secrets = {"MODERATION_DB_URL"}
        server.variables = {"DEPLOY_MODE": "push"}
        checks = _by_name(diagnose(fork, env={"GITHUB_TOKEN": server.token,
                                              "GITHUB_API_URL": server.url}))
    assert checks["secret KUBE_CONFIG"].status == "missing"
    assert "gh secret set KUBE_CONFIG --repo acme/moderation" in checks["secret KUBE_CONFIG"].detail


def test_an_unreadable_settings_api_is_reported(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        checks = _by_name(diagnose(fork, env={"GITHUB_TOKEN": "wrong",
                                              "GITHUB_API_URL": server.url}))
    assert checks["repository settings"].status == "missing"
    assert "401 Bad credentials" in checks["repository settings"].detail
    assert "Secrets and Variables: read" in checks["repository settings"].detail


def test_a_dvc_remote_that_does_not_exist_is_missing(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    (tmp_path / "dvc-remote").rmdir()
    check = _by_name(diagnose(fork, env={}))["DVC remote"]
    assert check.status == "missing" and "does not exist" in check.detail


def test_no_default_dvc_remote_is_missing(fork):
    _dvc_config(fork, "[core]\n    analytics = false\n")
    check = _by_name(diagnose(fork, env={}))["DVC remote"]
    assert check.status == "missing" and "dvc remote add -d origin" in check.detail


def test_an_overlay_must_pin_exactly_one_image_with_a_tag(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    image = "ghcr.io/acme/moderation-service"
    _overlay(fork, "staging", [{"name": "a", "newName": image, "newTag": "1"},
                               {"name": "b", "newName": image, "newTag": "2"}])
    _overlay(fork, "production", [{"name": "a", "newName": image}])
    checks = _by_name(diagnose(fork, env={}))
    assert "has 2 entries; exactly one" in checks["image pin staging"].detail
    assert "has no newTag or digest" in checks["image pin production"].detail


@pytest.mark.parametrize("image", ["ghcr.io/<owner>/m", "ghcr.io/your-org/m",
                                   "registry.example.com/m", "ghcr.io/example/m"])
def test_placeholder_image_names_are_warnings(fork, tmp_path, image):
    _configure(fork, tmp_path / "dvc-remote")
    _overlay(fork, "staging", [{"name": "m", "newName": image, "newTag": "1"}])
    check = _by_name(diagnose(fork, env={}, reach=False))["image pin staging"]
    assert check.status == "warn" and "is a template placeholder" in check.detail


def test_an_image_under_another_ghcr_owner_is_a_warning(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    _overlay(fork, "production", [{"name": "m", "newName": "ghcr.io/someone-else/m",
                                   "newTag": "1"}])
    detail = _by_name(diagnose(fork, env={}))["image pin production"].detail
    assert "can only push to ghcr.io/acme" in detail


def test_an_argo_app_pointing_at_another_repository_is_a_warning(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    _argo_app(fork, "https://github.com/acme/elsewhere.git")
    check = _by_name(diagnose(fork, env={}))["Argo CD app moderation-production"]
    assert check.status == "warn" and "is not this clone's origin" in check.detail


def test_stale_workflows_are_missing(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    dvc = yaml.safe_load((fork / "dvc.yaml").read_text())
    dvc["stages"]["train"]["deps"].append("config/extra.txt")
    (fork / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    check = _by_name(diagnose(fork, env={}))["workflows"]
    assert check.status == "missing" and "make workflows" in check.detail


# --- settings at every level, and what GitHub's own policies need -------------------------


def test_environment_and_organisation_settings_count_as_set(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.owner_type = "Organization"
        server.org_variables, server.org_secrets = {"DRIFT_CHECK": "enabled"}, {"MODERATION_DB_URL"}
        server.variables = {"DEPLOY_MODE": "push"}
        server.add_environment("production", secrets={"KUBE_CONFIG"})  # rollout's apply job
        checks = _diagnose(fork, server)
    assert checks["secret MODERATION_DB_URL"].status == "ok"
    assert "organisation" in checks["secret MODERATION_DB_URL"].detail
    assert checks["secret KUBE_CONFIG"].status == "ok"
    assert "environment production" in checks["secret KUBE_CONFIG"].detail
    assert checks["variable DRIFT_CHECK"].status == "ok"


def test_a_secret_only_in_the_production_environment_is_unseen_by_the_drift_workflow(fork,
                                                                                     tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.variables = {"DRIFT_CHECK": "enabled"}
        server.add_environment("production", secrets={"MODERATION_DB_URL"})
        check = _diagnose(fork, server)["secret MODERATION_DB_URL"]
    assert check.status == "missing"
    assert "set only in environment production, which drift do(es) not use" in check.detail
    assert "`gh secret set MODERATION_DB_URL --repo acme/moderation`" in check.detail


def test_settings_past_the_first_page_are_found(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.variables = {"DRIFT_CHECK": "enabled"}
        server.secrets = {f"A_{i:03}" for i in range(120)} | {"MODERATION_DB_URL"}
        check = _diagnose(fork, server)["secret MODERATION_DB_URL"]
        pages = [p for m, p in server.requests if p.startswith("/repos/acme/moderation/actions/"
                                                                "secrets")]
    assert check.status == "ok" and len(pages) == 2


def test_an_aws_role_without_its_region_is_missing(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.variables = {"AWS_ROLE_ARN": "arn:aws:iam::1:role/x"}
        check = _diagnose(fork, server)["variable AWS_REGION"]
    assert check.status == "missing"
    assert "`gh variable set AWS_REGION --repo acme/moderation`" in check.detail


def test_actions_turned_off_for_the_repository_is_missing_with_the_fix(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.actions_permissions = {"enabled": False}
        off = _diagnose(fork, server)["Actions enabled"]
        server.actions_permissions = {"enabled": True, "allowed_actions": "local_only"}
        local_only = _diagnose(fork, server)["Actions enabled"]
    assert off.status == "missing" and "Actions are disabled for acme/moderation" in off.detail
    assert "gh api -X PUT repos/acme/moderation/actions/permissions -F enabled=true" in off.detail
    assert local_only.status == "warn" and "actions/checkout" in local_only.detail


def test_a_forks_disabled_workflows_are_missing_with_the_command_that_enables_them(fork,
                                                                                  tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.workflows = [{**w, "state": "disabled_fork"} for w in _active_workflows(fork)]
        disabled = _diagnose(fork, server)["workflows enabled"]
        server.workflows = []
        unlisted = _diagnose(fork, server)["workflows enabled"]
    assert disabled.status == "missing" and "disabled_fork" in disabled.detail
    assert "`gh workflow enable ci.yml --repo acme/moderation`" in disabled.detail
    assert "I understand my workflows, go ahead and enable them" in disabled.detail
    assert unlisted.status == "missing" and "GitHub lists no workflow" in unlisted.detail


def test_an_organisation_that_forbids_actions_prs_wins_over_the_repository(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.owner_type = "Organization"
        server.workflow_permissions["can_approve_pull_request_reviews"] = True
        forbidden = _pr_check(fork, server)
        server.org_workflow_permissions["can_approve_pull_request_reviews"] = True
        allowed = _pr_check(fork, server)
    assert forbidden.status == "missing" and "organisation acme does not" in forbidden.detail
    assert "orgs/acme/actions/permissions/workflow" in forbidden.detail
    assert allowed.status == "ok"


@pytest.mark.parametrize(("scopes", "status", "says"), [
    ("repo, workflow", "ok", "repo and workflow scopes"),
    ("repo", "warn", "without the `workflow` scope"),
    ("read:org, gist", "missing", "add the `repo` scope"),
    (None, "warn", "Commit statuses: write, and Workflows: write"),
])
def test_the_promotion_tokens_scopes_are_read_where_github_reveals_them(fork, tmp_path, scopes,
                                                                         status, says):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        if scopes is not None:  # a classic token; otherwise fine-grained: no X-OAuth-Scopes
            server.token_scopes = {"promotion-token": scopes}
        else:
            server.actions_tokens = {"promotion-token"}
        check = _diagnose(fork, server, PROMOTION_TOKEN="promotion-token")[
            "PROMOTION_TOKEN scopes"]
    assert check.status == status and says in check.detail


def test_a_promotion_token_secret_without_the_token_at_hand_says_what_it_needs(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.secrets = {"PROMOTION_TOKEN"}
        check = _diagnose(fork, server)["PROMOTION_TOKEN scopes"]
        server.secrets = set()
        absent = _diagnose(fork, server)
    assert check.status == "warn" and "PROMOTION_TOKEN=<the token> make doctor" in check.detail
    assert "Pull requests: write" in check.detail
    assert "PROMOTION_TOKEN scopes" not in absent


def test_a_train_runner_label_no_self_hosted_runner_has_is_missing(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.variables = {"TRAIN_RUNNER": "gpu"}
        server.runners = [["self-hosted", "linux", "x64"]]
        missing = _diagnose(fork, server)["TRAIN_RUNNER runner"]
        server.owner_type, server.org_runners = "Organization", [["self-hosted", "GPU"]]
        at_org = _diagnose(fork, server)["TRAIN_RUNNER runner"]
        server.variables = {"TRAIN_RUNNER": "ubuntu-24.04"}
        hosted = _diagnose(fork, server)["TRAIN_RUNNER runner"]
    assert missing.status == "missing" and "has the label `gpu`" in missing.detail
    assert "./config.sh --labels gpu" in missing.detail
    assert "gh variable delete TRAIN_RUNNER --repo acme/moderation" in missing.detail
    assert at_org.status == "ok" and hosted.status == "ok"


def test_unreadable_runners_make_the_train_runner_check_a_warning(fork, tmp_path):
    _configure(fork, tmp_path / "dvc-remote")
    with FakeGitHub(repo="acme/moderation") as server:
        server.variables = {"TRAIN_RUNNER": "gpu"}
        server.non_admin_tokens = {"read-only"}
        check = _diagnose(fork, server, GITHUB_TOKEN="read-only")["TRAIN_RUNNER runner"]
    assert check.status == "warn" and "repository runners unreadable" in check.detail


def _set_params(root: Path, edit) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def test_new_labels_with_the_templates_behavioural_checks_are_a_warning(fork):
    assert _by_name(diagnose(fork, env={}, reach=False))["behavioural checks"].status == "ok"
    _set_params(fork, lambda p: p["data"].update(labels=["not-hate", "hate"]))
    check = _by_name(diagnose(fork, env={}, reach=False))["behavioural checks"]
    assert check.status == "warn"
    assert "were written for ['not-offensive', 'offensive']" in check.detail
    assert "evaluate.behaviour.checks" in check.detail and "docs/tasks.md" in check.detail


def test_a_behavioural_check_without_a_floor_is_missing_in_doctor(fork):
    _set_params(fork, lambda p: p["gate"]["floors"]["behaviour"].pop("directional_insult"))
    check = _by_name(diagnose(fork, env={}, reach=False))["behavioural checks"]
    assert check.status == "missing"
    assert "gate.floors.behaviour.directional_insult: missing" in check.detail
