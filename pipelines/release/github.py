"""A small GitHub REST client: the calls the workflows' entry points make (PRs, issues, settings).

Configured like Actions configures a job: GITHUB_API_URL (default https://api.github.com),
GITHUB_REPOSITORY (owner/name) and GITHUB_TOKEN. Tests point GITHUB_API_URL at a local server.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from pipelines.core.errors import PipelineError

DEFAULT_API_URL = "https://api.github.com"
MAX_BODY_CHARS = 65536  # GitHub rejects longer pull request and issue bodies
TRUNCATION_NOTE = "\n\n… (truncated: the full report is in the workflow run's artifacts)"


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


@dataclass(frozen=True)
class GitHub:
    repo: str
    token: str
    api_url: str = DEFAULT_API_URL
    timeout_s: float = 30.0

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

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                query: dict[str, str] | None = None) -> Any:
        """One API call; returns the decoded JSON, raises GitHubError on any non-2xx answer."""
        url = f"{self.api_url.rstrip('/')}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "moderation-gitops",
            **({"Content-Type": "application/json"} if data is not None else {}),
        })
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise GitHubError(f"{method} {path}: {e.code} {_reason(e)}", e.code) from None
        except (urllib.error.URLError, TimeoutError) as e:
            raise GitHubError(f"{method} {url}: cannot reach the GitHub API ({e})") from None
        return json.loads(raw) if raw else None

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

    def workflow_permissions(self) -> dict[str, Any]:
        """The repository's GITHUB_TOKEN defaults: default_workflow_permissions and
        can_approve_pull_request_reviews (whether Actions may create and approve PRs)."""
        return self.request("GET", self._repo_path("/actions/permissions/workflow"))

    def variable_names(self) -> set[str]:
        data = self.request("GET", self._repo_path("/actions/variables"),
                            query={"per_page": "30"})
        return {v["name"] for v in data["variables"]}

    def secret_names(self) -> set[str]:
        data = self.request("GET", self._repo_path("/actions/secrets"), query={"per_page": "30"})
        return {s["name"] for s in data["secrets"]}


def _reason(error: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(error.read() or b"{}")
    except json.JSONDecodeError:
        return error.reason or "error"
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
