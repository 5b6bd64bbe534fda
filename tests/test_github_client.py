"""The GitHub client against a local server speaking the GitHub REST API (127.0.0.1)."""

from __future__ import annotations

import socket
import time

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.release.github import (
    MAX_BODY_CHARS,
    TRUNCATION_NOTE,
    GitHub,
    GitHubError,
    open_or_comment_issue,
    open_or_update_pr,
)
from tests.github_server import FakeGitHub

BRANCH = "promote/data-2026-11"


@pytest.fixture
def server():
    with FakeGitHub(branches=("main", BRANCH, "promote/other")) as fake:
        yield fake


@pytest.fixture
def gh(server) -> GitHub:
    return GitHub(server.repo, server.token, server.url, timeout_s=5)


def test_first_call_opens_the_pr_and_later_calls_update_the_same_one(server, gh):
    action, first = open_or_update_pr(gh, BRANCH, "main", "Promote model A", "report A")
    assert action == "created" and first["number"] == 1
    action, second = open_or_update_pr(gh, BRANCH, "main", "Promote model B", "report B")
    assert action == "updated" and second["number"] == 1
    open_prs = server.pulls()
    assert len(open_prs) == 1
    assert (open_prs[0]["title"], open_prs[0]["body"]) == ("Promote model B", "report B")
    assert ("PATCH", f"/repos/{server.repo}/pulls/1") in server.requests


def test_each_source_branch_gets_its_own_pr(server, gh):
    open_or_update_pr(gh, BRANCH, "main", "A", "a")
    open_or_update_pr(gh, "promote/other", "main", "B", "b")
    assert sorted(p["head"]["ref"] for p in server.pulls()) == sorted([BRANCH, "promote/other"])


def test_a_closed_pr_is_not_reused(server, gh):
    open_or_update_pr(gh, BRANCH, "main", "A", "a")
    server.pulls()[0]["state"] = "closed"
    action, pull = open_or_update_pr(gh, BRANCH, "main", "A again", "a2")
    assert action == "created" and pull["number"] == 2


def test_a_pr_opened_by_a_concurrent_run_is_updated_not_duplicated(server, gh):
    class LateLookup(GitHub):
        """Sees no PR on the first lookup, as if another run opened it just after."""

        looked = False

        def find_open_pr(self, head_branch):
            if not LateLookup.looked:
                LateLookup.looked = True
                return None
            return super().find_open_pr(head_branch)

    open_or_update_pr(gh, BRANCH, "main", "A", "from the other run")
    late = LateLookup(server.repo, server.token, server.url, timeout_s=5)
    action, pull = open_or_update_pr(late, BRANCH, "main", "A", "from this run")
    assert action == "updated"
    assert len(server.pulls()) == 1 and server.pulls()[0]["body"] == "from this run"


def test_an_unknown_head_branch_is_a_422_naming_the_field(gh):
    with pytest.raises(GitHubError, match=r"POST .*/pulls: 422 Validation Failed \(head invalid\)"):
        gh.create_pr("no-such-branch", "main", "t", "b")


def test_a_bad_token_is_a_401_with_githubs_reason(server):
    bad = GitHub(server.repo, "wrong", server.url, timeout_s=5)
    with pytest.raises(GitHubError, match="401 Bad credentials") as err:
        bad.find_open_pr(BRANCH)
    assert err.value.status == 401


def test_an_unknown_repository_is_a_404(server):
    other = GitHub("acme/other", server.token, server.url, timeout_s=5)
    with pytest.raises(GitHubError, match="GET /repos/acme/other/pulls: 404 Not Found"):
        other.find_open_pr(BRANCH)


def test_an_unreachable_api_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gh = GitHub("acme/x", "t", f"http://127.0.0.1:{port}", timeout_s=2, backoff_s=0.01)
    with pytest.raises(GitHubError, match="cannot reach the GitHub API"):
        gh.default_branch()


def test_a_body_over_githubs_limit_is_cut_with_a_pointer_to_the_artifacts(server, gh):
    open_or_update_pr(gh, BRANCH, "main", "big", "x" * (MAX_BODY_CHARS + 10))
    body = server.pulls()[0]["body"]
    assert len(body) == MAX_BODY_CHARS and body.endswith(TRUNCATION_NOTE)


def test_a_repeated_finding_comments_on_the_open_issue_instead_of_opening_another(server, gh):
    open_or_update_pr(gh, BRANCH, "main", "Drift detected", "a PR with the same title")
    server.pulls()[0]["labels"] = [{"name": "drift"}]
    first, issue = open_or_comment_issue(gh, "Drift detected", "share moved", "drift")
    second, again = open_or_comment_issue(gh, "Drift detected", "moved more", "drift")
    assert (first, second) == ("created", "commented")
    assert issue["number"] == again["number"] == 2
    assert len(server.issues()) == 1
    assert [c["body"] for c in server.comments] == ["moved more"]


def test_settings_names_are_listed_without_values(server, gh):
    server.variables = {"DEPLOY_MODE": "push"}
    server.secrets = {"MODERATION_DB_URL"}
    assert gh.variable_names() == {"DEPLOY_MODE"}
    assert gh.secret_names() == {"MODERATION_DB_URL"}


def test_from_env_names_the_missing_variables():
    with pytest.raises(GitHubError, match="GITHUB_REPOSITORY, GITHUB_TOKEN not set"):
        GitHub.from_env({})
    with pytest.raises(GitHubError, match="expected owner/name"):
        GitHub.from_env({"GITHUB_REPOSITORY": "acme", "GITHUB_TOKEN": "t"})


def _env(server, monkeypatch):
    monkeypatch.setenv("GITHUB_API_URL", server.url)
    monkeypatch.setenv("GITHUB_REPOSITORY", server.repo)
    monkeypatch.setenv("GITHUB_TOKEN", server.token)


def test_cli_opens_then_updates_the_pr_against_the_default_branch(server, monkeypatch, tmp_path):
    _env(server, monkeypatch)
    body = tmp_path / "pr_body.md"
    body.write_text("## Verdict: promote\n")
    runner = CliRunner()
    first = runner.invoke(app, ["github", "open-pr", BRANCH, "Promote", str(body)])
    assert first.exit_code == 0, first.output
    assert "created pull request #1 https://github.com/acme/moderation/pull/1" in first.output
    second = runner.invoke(app, ["github", "open-pr", BRANCH, "Promote", str(body)])
    assert "updated pull request #1" in second.output
    assert server.pulls()[0]["base"]["ref"] == "main"


def test_cli_fails_clearly_on_a_missing_body_file_or_environment(server, monkeypatch, tmp_path):
    runner = CliRunner()
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    no_env = runner.invoke(app, ["github", "open-issue", "t", str(tmp_path / "x.md")])
    assert no_env.exit_code == 2 and "GITHUB_TOKEN" in no_env.output
    _env(server, monkeypatch)
    no_body = runner.invoke(app, ["github", "open-issue", "t", str(tmp_path / "x.md")])
    assert no_body.exit_code == 1 and "x.md: body file not found" in no_body.output
    assert server.issues() == []


def test_a_commit_status_is_recorded_and_an_invalid_state_is_422(server, gh):
    sha = "a" * 40
    gh.set_status(sha, "success", "moderation/gate", "PROMOTE: v1 " + "x" * 200, "https://run")
    assert server.statuses[0]["context"] == "moderation/gate"
    assert len(server.statuses[0]["description"]) == 140  # GitHub's limit
    with pytest.raises(GitHubError, match="422 Validation Failed"):
        gh.set_status(sha, "passed", "moderation/gate", "x")


def test_a_status_on_a_commit_the_repository_lacks_is_422(tmp_path):
    import subprocess

    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path)], check=True)
    with FakeGitHub(git_dir=tmp_path) as fake:
        client = GitHub(fake.repo, fake.token, fake.url, timeout_s=5)
        with pytest.raises(GitHubError, match="No commit found for SHA"):
            client.set_status("b" * 40, "success", "moderation/gate", "x")


def test_the_workflow_pr_permission_reads_like_github(server, gh):
    assert gh.workflow_permissions() == {"default_workflow_permissions": "read",
                                         "can_approve_pull_request_reviews": False}


# --- retries: GitHub's rate limits and server errors ---------------------------------------

PULLS = "/repos/acme/moderation/pulls"


def _calls(server, method: str, path: str) -> int:
    return sum(1 for m, p in server.requests if m == method and p.split("?")[0] == path)


def test_a_429_is_retried_after_the_retry_after_seconds(server, gh):
    server.script("POST", PULLS, (429, {"Retry-After": "1"}, {"message": "Too Many Requests"}))
    start = time.monotonic()
    pull = gh.create_pr(BRANCH, "main", "t", "b")
    assert pull["number"] == 1 and time.monotonic() - start >= 0.9
    assert _calls(server, "POST", PULLS) == 2


def test_a_secondary_rate_limit_403_is_retried_after_the_retry_after_seconds(server, gh):
    server.script("PATCH", f"{PULLS}/1", (403, {"Retry-After": "1"}, {
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes before "
                   "you try again."}))
    gh.create_pr(BRANCH, "main", "t", "b")
    start = time.monotonic()
    assert gh.update_pr(1, "t2", "b2")["title"] == "t2"
    assert time.monotonic() - start >= 0.9 and _calls(server, "PATCH", f"{PULLS}/1") == 2


def test_a_spent_quota_waits_for_the_ratelimit_reset_whatever_the_message(server, gh):
    reset = int(time.time()) + 1
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    server.script("GET", "/repos/acme/moderation", (403, headers, {"message": "quota spent"}),
                  (429, headers, {"message": "API rate limit exceeded for installation ID 1."}))
    assert gh.default_branch() == "main"
    assert time.time() >= reset and _calls(server, "GET", "/repos/acme/moderation") == 3


def test_server_errors_are_retried_with_backoff(server):
    gh = GitHub(server.repo, server.token, server.url, timeout_s=5, backoff_s=0.05)
    server.script("GET", "/repos/acme/moderation", (502, {}, {"message": "Server Error"}),
                  (503, {}, {"message": "Service Unavailable"}))
    assert gh.default_branch() == "main"
    assert _calls(server, "GET", "/repos/acme/moderation") == 3


def test_retries_stop_after_the_attempts_with_githubs_last_answer(server):
    gh = GitHub(server.repo, server.token, server.url, timeout_s=5, attempts=3, backoff_s=0.01)
    server.script("GET", "/repos/acme/moderation", *[(502, {}, {"message": "Server Error"})] * 5)
    with pytest.raises(GitHubError, match=r"502 Server Error \(still failing after 3 tries\)"):
        gh.default_branch()
    assert _calls(server, "GET", "/repos/acme/moderation") == 3


def test_a_wait_beyond_the_budget_fails_at_once_instead_of_blocking_the_job(server):
    gh = GitHub(server.repo, server.token, server.url, timeout_s=5, max_wait_s=30)
    reset = str(int(time.time()) + 3600)
    server.script("GET", "/repos/acme/moderation",
                  (429, {"Retry-After": "3600"}, {"message": "Too Many Requests"}),
                  (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset},
                   {"message": "API rate limit exceeded for user ID 1."}))
    for _ in range(2):  # once for Retry-After, once for x-ratelimit-reset
        start = time.monotonic()
        with pytest.raises(GitHubError, match=r"wait \d+ s, more than the 30 s .*try again later"):
            gh.default_branch()
        assert time.monotonic() - start < 5


def test_the_pr_creation_refusal_names_the_setting_to_change_and_is_not_retried(server):
    server.actions_tokens = {"actions-token"}
    gh = GitHub(server.repo, "actions-token", server.url, timeout_s=5)
    with pytest.raises(GitHubError) as err:
        open_or_update_pr(gh, BRANCH, "main", "t", "b")
    message = str(err.value)
    assert err.value.status == 403 and "not permitted to create or approve pull requests" in message
    assert "Settings > Actions > General > Workflow permissions > 'Allow GitHub Actions to " \
        "create and approve pull requests'" in message
    assert "organisation's Settings" in message and "PROMOTION_TOKEN" in message
    assert _calls(server, "POST", PULLS) == 1
    server.workflow_permissions["can_approve_pull_request_reviews"] = True
    assert open_or_update_pr(gh, BRANCH, "main", "t", "b")[0] == "created"


def test_an_organisation_that_forbids_pr_creation_overrides_the_repository(server):
    server.actions_tokens, server.owner_type = {"actions-token"}, "Organization"
    server.workflow_permissions["can_approve_pull_request_reviews"] = True
    gh = GitHub(server.repo, "actions-token", server.url, timeout_s=5)
    with pytest.raises(GitHubError, match="not permitted to create or approve"):
        gh.create_pr(BRANCH, "main", "t", "b")


def test_a_403_that_is_no_rate_limit_is_not_retried(server):
    server.non_admin_tokens = {"read-only"}
    gh = GitHub(server.repo, "read-only", server.url, timeout_s=5)
    with pytest.raises(GitHubError, match="403 Resource not accessible by integration$"):
        gh.workflow_permissions()
    assert _calls(server, "GET", "/repos/acme/moderation/actions/permissions/workflow") == 1


def test_settings_lists_are_read_past_the_first_page(server, gh):
    server.secrets = {f"SECRET_{i:03}" for i in range(130)}
    server.variables = {f"VAR_{i:03}": str(i) for i in range(45)}
    assert gh.secrets() == server.secrets
    assert gh.variables() == server.variables
    assert _calls(server, "GET", "/repos/acme/moderation/actions/secrets") == 2  # 100 a page
