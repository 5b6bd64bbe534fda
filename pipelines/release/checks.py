"""The pull requests the workflows open (promotion, revert) under branch protection: which token
pushes them, and how the required check (`ci`'s job) comes to run on them.

GitHub starts no workflow for a push or pull request made with the workflow's GITHUB_TOKEN, except
for `workflow_dispatch`, and GITHUB_TOKEN may never push commits that change
`.github/workflows/`. So a PR opened with GITHUB_TOKEN gets `ci` by a dispatch on its branch (the
check run lands on the PR's head commit), and one opened with PROMOTION_TOKEN (a fine-grained PAT
or a GitHub App token) gets it from its own `pull_request` event.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.core.gitops import changed_files, git
from pipelines.core.tools import succeeds
from pipelines.release.github import GitHub, GitHubSettingsError
from pipelines.runtime.errors import PipelineError

CI_WORKFLOW = "ci.yml"
WORKFLOWS_DIR = ".github/workflows/"
TOKEN_DOCS = "docs/workflows.md, 'Tokens'"
PROMOTION_TOKEN_FIX = (
    "set the repository secret PROMOTION_TOKEN to a fine-grained token with Contents, Pull "
    "requests and Commit statuses: write, and Workflows: write (or mint a GitHub App "
    f"installation token per run with the same permissions) ({TOKEN_DOCS})")


class TokenError(PipelineError):
    """The token cannot do what the step needs; the message names the token and the fix."""


@dataclass(frozen=True)
class PushToken:
    """The token that pushes a branch and opens its pull request, and which secret it came from."""

    value: str
    name: str

    @property
    def starts_workflows(self) -> bool:
        """Whether its pushes and pull requests start workflows (only GITHUB_TOKEN's do not)."""
        return self.name != "GITHUB_TOKEN"


def push_token(env: dict[str, str] | None = None) -> PushToken:
    """PROMOTION_TOKEN when set, else GITHUB_TOKEN."""
    env = dict(os.environ if env is None else env)
    for name in ("PROMOTION_TOKEN", "GITHUB_TOKEN"):
        if env.get(name):
            return PushToken(env[name], name)
    raise GitHubSettingsError("environment variable GITHUB_TOKEN not set (nor PROMOTION_TOKEN): "
                              "the step pushes a branch and opens a pull request with one of "
                              "them; GITHUB_REPOSITORY=owner/name names the repository")


def client(token: PushToken, env: dict[str, str] | None = None) -> GitHub:
    """The API client acting with `token` (the PR's author decides whether workflows start)."""
    env = dict(os.environ if env is None else env)
    return GitHub.from_env({**env, "GITHUB_TOKEN": token.value})


def workflow_changes(base_ref: str, head: str = "HEAD", root: Path | str = ".") -> list[str]:
    """Workflow files that `head` changes since it left `base_ref` (what a push of it carries)."""
    if not succeeds(["git", "-C", str(root), "rev-parse", "--verify", "--quiet",
                     f"{base_ref}^{{commit}}"]):
        raise TokenError(f"{base_ref} is not in this clone: the workflow files a push would "
                         "change are found against it (the retrain jobs check out with "
                         "fetch-depth: 0; by hand, `git fetch origin`)")
    base = git(root, "merge-base", base_ref, head).strip()
    return [f for f in changed_files(root, base, head) if f.startswith(WORKFLOWS_DIR)]


def refuse_workflow_push(files: list[str], token_name: str) -> None:
    """GITHUB_TOKEN is refused any push whose commits change a workflow file: fail before the
    work that precedes the push, with the fix."""
    if files and token_name == "GITHUB_TOKEN":
        raise TokenError(f"this branch changes {', '.join(files)}, and GitHub refuses a push of "
                         "such commits made with GITHUB_TOKEN (whatever its permissions), so "
                         f"the promotion branch could not be pushed: {PROMOTION_TOKEN_FIX}")


def request_ci(gh: GitHub, branch: str, token: PushToken) -> str:
    """Make `ci` run on the branch's head: dispatch it when GITHUB_TOKEN opened the PR."""
    if token.starts_workflows:
        return (f"ci: runs on the pull request of {branch} ({token.name} starts workflows)")
    gh.request("POST", f"/repos/{gh.repo}/actions/workflows/{CI_WORKFLOW}/dispatches",
               {"ref": branch})
    return (f"ci: dispatched {CI_WORKFLOW} on {branch} (a pull request opened with GITHUB_TOKEN "
            "starts no workflow; its check run lands on the pull request's head commit)")
