"""Git plumbing for the bot branches (promotion, revert): commit chosen files on top of a commit
without moving HEAD, and push with a token given on the command line, never stored."""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from pathlib import Path

from pipelines.core.tools import CommandError, run
from pipelines.runtime.errors import PipelineError

# Actions runners have no git identity; commits made there are signed by the Actions bot.
BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"


class GitError(CommandError):
    """A git command failed."""


def git(root: Path | str, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120, check: bool = True, binary: bool = False,
        error: type[PipelineError] = GitError) -> str | bytes:
    """Run git in root; returns stdout, raises `error` (GitError) with git's stderr on failure."""
    return run(["git", "-C", str(root), *args], env=env, timeout=timeout, check=check,
               binary=binary, error=error)


def _identity(root: Path | str) -> dict[str, str]:
    """Author/committer env: the configured identity, else the Actions bot."""
    env = dict(os.environ)
    configured = git(root, "config", "user.email", check=False).strip()
    if not configured:
        for role in ("AUTHOR", "COMMITTER"):
            env.setdefault(f"GIT_{role}_NAME", BOT_NAME)
            env.setdefault(f"GIT_{role}_EMAIL", BOT_EMAIL)
    return env


def head(root: Path | str = ".") -> str:
    return git(root, "rev-parse", "HEAD").strip()


def untracked(root: Path | str, folder: str) -> list[str]:
    """Files under folder that git does not track yet (and does not ignore)."""
    out = git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", folder)
    return sorted(filter(None, out.split("\0")))


def commit_files(root: Path | str, parent: str, paths: list[str], message: str) -> str:
    """A commit whose tree is parent's plus the working-tree state of paths; HEAD, the index and
    the working tree are left alone. Returns the new commit's sha."""
    root = Path(root)
    env = _identity(root)
    with tempfile.TemporaryDirectory(prefix="gitops-index-") as tmp:
        env["GIT_INDEX_FILE"] = str(Path(tmp) / "index")
        git(root, "read-tree", parent, env=env)
        # -A also records deletions of listed paths; --force because each path is named: an
        # ignore rule for local artifacts (reports/*) must not drop a file the commit carries.
        git(root, "add", "-A", "--force", "--", *paths, env=env)
        tree = git(root, "write-tree", env=env).strip()
    return git(root, "commit-tree", tree, "-p", parent, "-m", message, env=env).strip()


def changed_files(root: Path | str, old: str, new: str) -> list[str]:
    return sorted(filter(None, git(root, "diff", "--name-only", old, new).splitlines()))


def auth_config(token: str | None) -> list[str]:
    """`git -c` arguments that authenticate an HTTPS push with a token, like actions/checkout."""
    if not token:
        return []
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return ["-c", f"http.extraheader=AUTHORIZATION: basic {basic}"]


def push(root: Path | str, sha: str, branch: str, remote: str = "origin",
         token: str | None = None) -> None:
    """Force-push sha to refs/heads/branch: a bot branch is rebuilt from its source every run."""
    git(root, *auth_config(token), "push", "--force", "--quiet", remote,
        f"{sha}:refs/heads/{branch}")


@contextlib.contextmanager
def detached_worktree(commit: str, root: Path | str = "."):
    """A temporary checkout of commit beside the working tree, which stays untouched."""
    with tempfile.TemporaryDirectory(prefix="gitops-tree-") as tmp:
        tree = Path(tmp) / "tree"
        git(root, "worktree", "add", "--detach", "--quiet", str(tree), commit)
        try:
            yield tree
        finally:
            git(root, "worktree", "remove", "--force", str(tree))
