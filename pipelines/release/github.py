"""The GitHub REST calls the workflows' entry points make (PRs, issues, statuses, settings).

Configured like Actions configures a job: GITHUB_API_URL (default https://api.github.com),
GITHUB_REPOSITORY (owner/name) and GITHUB_TOKEN. Tests point GITHUB_API_URL at a local server.
PyGithub's requester does the HTTP: authentication, GitHub's error classes, pagination through
`Link` headers, and retries (`BoundedRetry`, below).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import requests
from github import Auth, Github, GithubException, GithubRetry
from github.GithubException import RateLimitExceededExceedsMaxWait
from github.PaginatedList import PaginatedList
from github.Requester import Requester
from github.Secret import Secret
from github.SelfHostedActionsRunner import SelfHostedActionsRunner
from github.Variable import Variable
from github.Workflow import Workflow
from urllib3 import Retry

from pipelines.runtime.errors import PipelineError

DEFAULT_API_URL = "https://api.github.com"
MAX_BODY_CHARS = 65536  # GitHub rejects longer pull request and issue bodies
TRUNCATION_NOTE = "\n\n… (truncated: the full report is in the workflow run's artifacts)"
# GitHub's answer to POST /pulls when "Allow GitHub Actions to create and approve pull requests"
# is off (the default) for the repository or its organisation.
PR_CREATION_REFUSED = "not permitted to create or approve pull requests"
PR_CREATION_FIX = ("Settings > Actions > General > Workflow permissions > 'Allow GitHub Actions "
                   "to create and approve pull requests' (on an organisation's repository, first "
                   "the same setting in the organisation's Settings > Actions > General), or set "
                   "the PROMOTION_TOKEN secret so that token opens the PR")


class GitHubError(PipelineError):
    """A GitHub API call failed; the message names the call, the status and GitHub's reason."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class GitHubSettingsError(GitHubError):
    """The environment does not say which repository or token to use (exit code 2)."""

    exit_code = 2


def fit_body(body: str) -> str:
    """Cut a body to GitHub's limit, saying where the rest is."""
    if len(body) <= MAX_BODY_CHARS:
        return body
    return body[: MAX_BODY_CHARS - len(TRUNCATION_NOTE)] + TRUNCATION_NOTE


class BoundedRetry(GithubRetry):
    """PyGithub's GithubRetry (5xx, and 403 rate limits recognised by their message), plus:
    429 is retried; any 403/429 with `x-ratelimit-remaining: 0` waits for `x-ratelimit-reset`;
    and all the waits of one call share one budget (`max_wait_s`): a wait that would overrun it
    raises RateLimitExceededExceedsMaxWait at once instead of blocking a job for an hour."""

    def __init__(self, max_wait_s: float = 120.0, deadline: float | None = None,
                 **kwargs: Any):
        kwargs.setdefault("status_forcelist", [*range(500, 600), 429])
        # PATCH (update the PR) is idempotent; urllib3's default set leaves it out.
        kwargs.setdefault("allowed_methods", {"GET", "POST", "PATCH", "PUT", "DELETE"})
        kwargs.setdefault("raise_on_status", False)  # the last answer becomes GitHub's error
        kwargs.setdefault("max_rate_limit_wait", max_wait_s)
        # Retry-After is read uncapped so that an over-budget wait is refused, not shortened.
        kwargs.setdefault("retry_after_max", 10**9)
        super().__init__(**kwargs)
        self.max_wait_s, self.deadline = max_wait_s, deadline

    def new(self, **kw: Any) -> BoundedRetry:
        # The budget starts at a call's first retry and carries over to every later one.
        kw.update(max_wait_s=self.max_wait_s,
                  deadline=self.deadline or time.monotonic() + self.max_wait_s)
        return super().new(**kw)

    def increment(self, method: str | None = None, url: str | None = None,  # type: ignore[override]
                  response: Any = None, *args: Any, **kwargs: Any) -> Retry:
        if response is not None and response.status == 403 and _quota_spent(response):
            # An exhausted quota is retryable whatever the message says: skip GithubRetry's
            # message test, which would raise at once.
            return Retry.increment(self, method, url, response, *args, **kwargs)
        return super().increment(method, url, response, *args, **kwargs)

    def sleep(self, response: Any = None) -> None:
        wait = self._required_wait(response)
        left = (self.deadline or time.monotonic() + self.max_wait_s) - time.monotonic()
        if wait > left:
            status = response.status if response is not None else 0
            headers = dict(response.headers) if response is not None else {}
            raise RateLimitExceededExceedsMaxWait(
                status, {"message": f"GitHub asked to wait {wait:.0f} s, more than the "
                         f"{self.max_wait_s:.0f} s this client waits per call"}, headers,
                wait=wait)
        time.sleep(wait)

    def _required_wait(self, response: Any) -> float:
        if response is not None:
            if response.headers.get("Retry-After"):
                return self.parse_retry_after(response.headers["Retry-After"])
            if _quota_spent(response) and str(response.headers.get("x-ratelimit-reset",
                                                                    "")).isdigit():
                # the reset is a whole second: wait past it
                return max(0.0, int(response.headers["x-ratelimit-reset"]) - time.time()) + 1
        return self.get_backoff_time()


def _quota_spent(response: Any) -> bool:
    return response.status in (403, 429) and response.headers.get("x-ratelimit-remaining") == "0"


@dataclass(frozen=True)
class GitHub:
    repo: str
    token: str
    api_url: str = DEFAULT_API_URL
    timeout_s: float = 30.0
    attempts: int = 5  # tries per call, the first included
    max_wait_s: float = 120.0  # all the waits between one call's tries together
    backoff_s: float = 1.0  # 5xx: 0, 2, 4, 8 ... times this, between tries

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> GitHub:
        """The client for the repository and token that Actions provides (or set by hand)."""
        env = dict(os.environ if env is None else env)
        missing = [k for k in ("GITHUB_REPOSITORY", "GITHUB_TOKEN") if not env.get(k)]
        if missing:
            raise GitHubSettingsError(f"environment variable(s) {', '.join(missing)} not set: "
                              "GITHUB_REPOSITORY=owner/name and a token allowed to open PRs")
        repo = env["GITHUB_REPOSITORY"]
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise GitHubSettingsError(f"GITHUB_REPOSITORY={repo!r}: expected owner/name")
        return cls(repo, env["GITHUB_TOKEN"], env.get("GITHUB_API_URL") or DEFAULT_API_URL)

    @property
    def owner(self) -> str:
        return self.repo.split("/")[0]

    @cached_property
    def _requester(self) -> Requester:
        retry = BoundedRetry(max_wait_s=self.max_wait_s, total=self.attempts - 1,
                             backoff_factor=self.backoff_s)
        # No client-side pacing between calls: a run makes a handful, and a secondary rate
        # limit, should one come, is retried with GitHub's own Retry-After.
        client = Github(auth=Auth.Token(self.token), base_url=self.api_url.rstrip("/"),
                        timeout=max(1, round(self.timeout_s)), user_agent="moderation-gitops",
                        retry=retry, per_page=100, seconds_between_requests=None,
                        seconds_between_writes=None, lazy=True)
        return client.requester

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             query: dict[str, str] | None = None) -> tuple[dict[str, Any], Any]:
        """One API call: (response headers, decoded JSON); GitHubError on any failure."""
        with self._errors(method, path):
            headers, data = self._requester.requestJsonAndCheck(method, path, parameters=query,
                                                                input=body)
        if isinstance(data, dict) and data.get("url") == path:
            del data["url"]  # PyGithub's own bookkeeping on GETs, not GitHub's answer
        return headers, data

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                query: dict[str, str] | None = None) -> Any:
        """One API call; returns the decoded JSON, raises GitHubError on any non-2xx answer."""
        return self.call(method, path, body, query)[1]

    def listing(self, path: str, key: str, item: type = Variable) -> list[Any]:
        """Every item of a paginated list answer ({"total_count", key: [...]}), all pages."""
        with self._errors("GET", path):
            return list(PaginatedList(item, self._requester, path, None, list_item=key))

    @contextmanager
    def _errors(self, method: str, path: str) -> Iterator[None]:
        """PyGithub's and requests' exceptions as a GitHubError naming the call."""
        try:
            yield
        except GithubException as e:
            raise GitHubError(f"{method} {path}: {e.status} {_reason(e)}"
                              f"{_advice(e, self.attempts)}", e.status) from None
        except requests.RequestException as e:
            url = f"{self.api_url.rstrip('/')}{path}"
            raise GitHubError(f"{method} {url}: cannot reach the GitHub API "
                              f"({type(e).__name__}: {e})") from None

    def _repo_path(self, suffix: str) -> str:
        return f"/repos/{self.repo}{suffix}"

    def default_branch(self) -> str:
        return self.request("GET", self._repo_path(""))["default_branch"]

    def find_open_pr(self, head_branch: str) -> dict[str, Any] | None:
        """The open pull request whose head is this repository's branch, if any."""
        pulls = self.request("GET", self._repo_path("/pulls"),
                             query={"state": "open", "head": f"{self.owner}:{head_branch}"})
        return pulls[0] if pulls else None

    def create_pr(self, head: str, base: str, title: str, body: str) -> dict[str, Any]:
        return self.request("POST", self._repo_path("/pulls"),
                            {"head": head, "base": base, "title": title, "body": fit_body(body)})

    def update_pr(self, number: int, title: str, body: str) -> dict[str, Any]:
        return self.request("PATCH", self._repo_path(f"/pulls/{number}"),
                            {"title": title, "body": fit_body(body)})

    def create_issue(self, title: str, body: str, labels: list[str] | None = None
                     ) -> dict[str, Any]:
        return self.request("POST", self._repo_path("/issues"),
                            {"title": title, "body": fit_body(body), "labels": labels or []})

    def find_open_issue(self, title: str, label: str) -> dict[str, Any] | None:
        """An open issue (not a PR) with this label and exactly this title, if any."""
        issues = self.request("GET", self._repo_path("/issues"),
                              query={"state": "open", "labels": label, "per_page": "100"})
        return next((i for i in issues
                     if i["title"] == title and "pull_request" not in i), None)

    def comment_on_issue(self, number: int, body: str) -> dict[str, Any]:
        return self.request("POST", self._repo_path(f"/issues/{number}/comments"),
                            {"body": fit_body(body)})

    def set_status(self, sha: str, state: str, context: str, description: str,
                   target_url: str | None = None) -> dict[str, Any]:
        """A commit status (what branch protection's required checks can name)."""
        body = {"state": state, "context": context, "description": description[:140]}
        if target_url:
            body["target_url"] = target_url
        return self.request("POST", self._repo_path(f"/statuses/{sha}"), body)

    def workflow_permissions(self, org: bool = False) -> dict[str, Any]:
        """The repository's (or its organisation's) GITHUB_TOKEN defaults:
        default_workflow_permissions and can_approve_pull_request_reviews (whether Actions may
        create and approve PRs)."""
        path = f"/orgs/{self.owner}" if org else self._repo_path("")
        return self.request("GET", f"{path}/actions/permissions/workflow")

    def variables(self, scope: str = "") -> dict[str, str]:
        """Variable name -> value at one level: "" (repository), "environment NAME" or "org"
        (the organisation's variables this repository may read)."""
        path, key = self._settings_path(scope, "variables")
        return {v.name: v.value for v in self.listing(path, key)}

    def secrets(self, scope: str = "") -> set[str]:
        """Secret names (GitHub never returns values) at one level, as for variables()."""
        path, key = self._settings_path(scope, "secrets")
        return {s.name for s in self.listing(path, key, Secret)}

    def _settings_path(self, scope: str, kind: str) -> tuple[str, str]:
        if scope == "org":
            return self._repo_path(f"/actions/organization-{kind}"), kind
        if scope.startswith("environment "):
            name = scope.removeprefix("environment ")
            return self._repo_path(f"/environments/{name}/{kind}"), kind
        return self._repo_path(f"/actions/{kind}"), kind

    def variable_names(self) -> set[str]:
        return set(self.variables())

    def secret_names(self) -> set[str]:
        return self.secrets()

    def runner_labels(self, org: bool = False) -> set[str]:
        """Labels of the repository's (or organisation's) self-hosted runners."""
        path = f"/orgs/{self.owner}/actions/runners" if org else \
            self._repo_path("/actions/runners")
        runners = self.listing(path, "runners", SelfHostedActionsRunner)
        return {str(label["name"]) for runner in runners for label in runner.labels}

    def owner_is_organisation(self) -> bool:
        return self.request("GET", self._repo_path(""))["owner"].get("type") == "Organization"

    def actions_permissions(self) -> dict[str, Any]:
        """{"enabled": whether Actions run at all here, "allowed_actions": all|local_only|...}"""
        return self.request("GET", self._repo_path("/actions/permissions"))

    def workflow_states(self) -> dict[str, str]:
        """Workflow file path -> state (active, disabled_fork, disabled_manually, ...)."""
        workflows = self.listing(self._repo_path("/actions/workflows"), "workflows", Workflow)
        return {w.path: w.state for w in workflows}

    def token_scopes(self) -> list[str] | None:
        """A classic token's OAuth scopes (X-OAuth-Scopes); None for fine-grained, App and
        Actions tokens, whose permissions the API does not reveal."""
        headers, _ = self.call("GET", self._repo_path(""))
        value = {k.lower(): v for k, v in headers.items()}.get("x-oauth-scopes")
        return None if value is None else [s.strip() for s in value.split(",") if s.strip()]


def _advice(error: GithubException, attempts: int) -> str:
    """What to do about an error, where the status alone does not say it."""
    if isinstance(error, RateLimitExceededExceedsMaxWait):
        return "; try again later"
    if error.status == 403 and PR_CREATION_REFUSED in _reason(error):
        return f"; fix: {PR_CREATION_FIX}"
    if error.status == 429 or error.status >= 500 or _is_rate_limit(error):
        return f" (still failing after {attempts} tries)"
    return ""


def _is_rate_limit(error: GithubException) -> bool:
    return (error.headers or {}).get("x-ratelimit-remaining") == "0" or \
        Requester.isRateLimitError(_reason(error))


def _reason(error: GithubException) -> str:
    payload = error.data
    if not isinstance(payload, dict):
        return str(payload or "error").strip()[:200]
    details = "; ".join(e.get("message") or f"{e.get('field')} {e.get('code')}"
                        for e in payload.get("errors") or [] if isinstance(e, dict))
    return payload.get("message", "error") + (f" ({details})" if details else "")


def open_or_update_pr(gh: GitHub, head: str, base: str, title: str, body: str
                      ) -> tuple[str, dict[str, Any]]:
    """Keep exactly one open PR per head branch: update it if open, else create it.

    Returns ("created" | "updated", pull request). A concurrent run that created the PR between
    our lookup and our create makes GitHub answer 422; we then update the PR it created.
    """
    existing = gh.find_open_pr(head)
    if existing is None:
        try:
            return "created", gh.create_pr(head, base, title, body)
        except GitHubError as e:
            if e.status != 422 or "already exists" not in str(e):
                raise
            existing = gh.find_open_pr(head)
            if existing is None:
                raise
    return "updated", gh.update_pr(existing["number"], title, body)


def open_or_comment_issue(gh: GitHub, title: str, body: str, label: str
                          ) -> tuple[str, dict[str, Any]]:
    """One open issue per title and label: a repeat finding comments instead of opening another."""
    existing = gh.find_open_issue(title, label)
    if existing is None:
        return "created", gh.create_issue(title, body, [label])
    gh.comment_on_issue(existing["number"], body)
    return "commented", existing
