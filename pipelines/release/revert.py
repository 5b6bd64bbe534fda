"""After a failed rollout: a pull request that puts back the release files of the bad merge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.core.gitops import changed_files, commit_files, detached_worktree, git, head, push
from pipelines.core.production import PROMOTION_FILES
from pipelines.core.tools import succeeds
from pipelines.deploy.pins import K8S_DIR
from pipelines.release.checks import PushToken, client, push_token, request_ci
from pipelines.release.github import open_or_update_pr

RELEASE_FILES = PROMOTION_FILES
REVERT_PREFIX = "revert/"


def revert_files(failed: str, root: Path | str = ".") -> list[str]:
    """The release files (overlay pins, model pointer) the failed commit changed."""
    prefix = f"{K8S_DIR.as_posix()}/overlays/"
    return [f for f in changed_files(root, f"{failed}^", failed)
            if (f.startswith(prefix) and f.endswith("/kustomization.yaml"))
            or f in RELEASE_FILES]


def revert(failed: str, remote: str = "origin", token: PushToken | None = None, gh=None,
           root: Path | str = ".") -> dict[str, Any] | None:
    """Push revert/<sha> restoring the pins and pointer to before `failed`, and open its PR
    (with PROMOTION_TOKEN when set), then make `ci` run on it: branch protection requires it.
    Only the release files go back: data and code that came with the merge stay."""
    failed = git(root, "rev-parse", failed).strip()
    files = revert_files(failed, root)
    if not files:
        print(f"rollout: {failed[:12]} changed no overlay pin or model pointer; nothing to revert")
        return None
    token = token or push_token()
    gh = gh or client(token)
    base = head(root)
    short = failed[:12]
    with detached_worktree(base, root) as tree:
        for rel in files:
            if succeeds(["git", "-C", str(tree), "cat-file", "-e", f"{failed}^:{rel}"]):
                git(tree, "checkout", f"{failed}^", "--", rel)
            else:
                (tree / rel).unlink(missing_ok=True)
        message = (f"Revert the release of {short}: its rollout failed\n\n"
                   f"Restores {', '.join(files)} to {failed}^.\n\nDeploy-Action: rollback\n")
        commit = commit_files(tree, base, files, message)
        branch = f"{REVERT_PREFIX}{short}"
        push(tree, commit, branch, remote, token.value)
    body = (f"The rollout of {failed} failed (canary aborted, degraded or timed out), so this "
            f"puts back what ran before it:\n\n" + "\n".join(f"- `{f}`" for f in files)
            + "\n\nMerging it rolls production back; data and code from that merge stay.\n")
    action, pull = open_or_update_pr(gh, branch, gh.default_branch(),
                                     f"Revert the release of {short} (rollout failed)", body)
    print(f"rollout: pushed {branch}; {action} pull request #{pull['number']} {pull['html_url']}")
    print(f"rollout: {request_ci(gh, branch, token)}")
    return {"branch": branch, "commit": commit, "files": files, "action": action, "pull": pull}
