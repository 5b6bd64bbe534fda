"""`make doctor`: checks that a fork of the template is configured, and says what is missing.

Each check returns one line: ok, warn (works, but still the template's demo setting) or missing
(the loop cannot close until it is fixed), with the exact command or file to change.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from dvc.repo import Repo

from pipelines.ci.workflows import SETTINGS, out_of_sync
from pipelines.core.gitops import GitError, git
from pipelines.core.versions import in_repo_remote
from pipelines.release.github import DEFAULT_API_URL, GitHub, GitHubError
from pipelines.release.retrain import IN_REPO_REMOTE_FIX

PLACEHOLDER = re.compile(r"(?i)\b(OWNER|example|your[-_]?(org|user|name|repo)|CHANGE[-_]?ME)\b"
                         r"|example\.(com|org)|<[^>]*>")
OVERLAYS = Path("k8s/overlays")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | missing
    detail: str


def _git(root: Path, *args: str) -> str | None:
    """git's answer, or None where there is none (no repository, no such remote)."""
    try:
        return git(root, *args, timeout=10).strip() or None
    except GitError:
        return None


def github_repo(root: Path, env: dict[str, str]) -> str | None:
    """owner/name from GITHUB_REPOSITORY, else from the `origin` remote's URL."""
    if env.get("GITHUB_REPOSITORY"):
        return env["GITHUB_REPOSITORY"]
    url = _git(root, "remote", "get-url", "origin") or ""
    match = re.search(r"github\.com[:/]([^/]+)/([^/]+?)(\.git)?/?$", url)
    return f"{match.group(1)}/{match.group(2)}" if match else None


def check_github_repo(root: Path, env: dict[str, str]) -> Check:
    repo = github_repo(root, env)
    if repo is None:
        return Check("GitHub repository", "missing",
                     "no github.com `origin` remote and no GITHUB_REPOSITORY: "
                     "`git remote add origin git@github.com:<owner>/<repo>.git`")
    return Check("GitHub repository", "ok", repo)


def check_dvc_remote(root: Path, reach: bool = True) -> Check:
    """A default DVC remote exists, is not the bundled demo remote, and answers."""
    try:
        repo = Repo(str(root))
    except Exception as e:  # DVC raises many kinds; all mean "not a usable DVC repo here"
        return Check("DVC remote", "missing", f"{root}: not a DVC repository ({e}); `dvc init`")
    name = repo.config["core"].get("remote")
    remotes = repo.config["remote"]
    if not name or name not in remotes:
        return Check("DVC remote", "missing", "no default remote in .dvc/config: "
                     "`dvc remote add -d origin s3://<bucket>/<path>` (or gs://, azure://, ssh://)")
    url = remotes[name]["url"]
    if in_repo_remote(root) is not None:
        return Check("DVC remote", "missing",
                     f"`{name}` = {url} is a folder inside the repository (the offline demo "
                     "remote): the retrain workflow refuses to push model weights into git; "
                     f"{IN_REPO_REMOTE_FIX}")
    if not reach:
        return Check("DVC remote", "ok", f"{name} = {url} (reachability not checked)")
    try:
        remote = repo.cloud.get_remote(name)
        reachable = remote.fs.exists(remote.path)
    except Exception as e:  # missing plugin, credentials or network: all reported as-is
        return Check("DVC remote", "missing", f"{name} = {url} is not reachable from here: {e}")
    if not reachable:
        return Check("DVC remote", "missing", f"{name} = {url} does not exist; create it "
                     "(bucket or directory) or fix the URL with `dvc remote modify`")
    return Check("DVC remote", "ok", f"{name} = {url} (reachable)")


def _image_pins(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    return list(kustomization.get("images") or [])


def check_overlay_pins(root: Path, repo: str | None) -> list[Check]:
    """Each overlay pins exactly one image, to a real registry name and a tag or digest."""
    overlays = sorted((root / OVERLAYS).glob("*/kustomization.yaml"))
    if not overlays:
        return [Check("image pins", "missing", f"no {OVERLAYS}/<env>/kustomization.yaml found")]
    checks = []
    for path in overlays:
        rel = path.relative_to(root)
        pins = _image_pins(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        if len(pins) != 1:
            checks.append(Check(f"image pin {rel.parent.name}", "missing",
                                f"{rel}: `images:` has {len(pins)} entries; exactly one pins the "
                                "service image"))
            continue
        pin = pins[0]
        image = str(pin.get("newName") or pin.get("name") or "")
        problem = _image_problem(image, repo)
        if problem:
            # The propose step pushes the image under the repository owner (or IMAGE_NAME) and
            # writes that name into the pin: the first promotion fixes it.
            checks.append(Check(f"image pin {rel.parent.name}", "warn",
                                f"{rel}: images[0].newName {problem} (the first promotion PR "
                                "sets it to the image the retrain workflow pushes)"))
        elif not (pin.get("newTag") or pin.get("digest")):
            checks.append(Check(f"image pin {rel.parent.name}", "missing",
                                f"{rel}: images[0] has no newTag or digest"))
        else:
            checks.append(Check(f"image pin {rel.parent.name}", "ok",
                                f"{image}:{pin.get('newTag') or pin.get('digest')}"))
    return checks


def _image_problem(image: str, repo: str | None) -> str | None:
    if not image:
        return "is empty; set it to ghcr.io/<owner>/moderation-service"
    if PLACEHOLDER.search(image):
        return (f"`{image}` is a template placeholder; set it to "
                f"ghcr.io/{(repo or '<owner>/x').split('/')[0].lower()}/moderation-service")
    if image.startswith("ghcr.io/") and repo:
        owner = image.split("/")[1]
        if owner != repo.split("/")[0].lower():
            return (f"`{image}` is under ghcr.io/{owner}, but this repository's workflow token "
                    f"can only push to ghcr.io/{repo.split('/')[0].lower()}")
    return None


def _normalise_git_url(url: str) -> str:
    url = re.sub(r"^git@([^:]+):", r"https://\1/", url.strip())
    return url.removesuffix("/").removesuffix(".git").lower()


def check_argocd_apps(root: Path) -> list[Check]:
    """Argo CD Applications point at this repository, not at the template's placeholder."""
    apps = []
    for path in sorted((root / "k8s").rglob("*.yaml")) if (root / "k8s").exists() else []:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == "Application" \
                    and str(doc.get("apiVersion", "")).startswith("argoproj.io/"):
                apps.append((path.relative_to(root), doc))
    if not apps:
        return [Check("Argo CD app", "warn", "no argoproj.io Application under k8s/: deploy with "
                      "the rollout workflow instead (repository variable DEPLOY_MODE=push)")]
    origin = _git(root, "remote", "get-url", "origin")
    checks = []
    for rel, app in apps:
        spec = app.get("spec") or {}
        sources = [spec.get("source")] if spec.get("source") else list(spec.get("sources") or [])
        for source in sources:
            url = str(source.get("repoURL", ""))
            name = f"Argo CD app {app.get('metadata', {}).get('name', rel)}"
            if not url or PLACEHOLDER.search(url):
                checks.append(Check(name, "missing", f"{rel}: spec.source.repoURL `{url}` is the "
                                    "template placeholder; set it to your fork's clone URL"))
            elif origin and _normalise_git_url(url) != _normalise_git_url(origin):
                checks.append(Check(name, "warn", f"{rel}: repoURL {url} is not this clone's "
                                    f"origin ({origin})"))
            else:
                checks.append(Check(name, "ok", url))
    return checks


def check_settings(repo: str | None, env: dict[str, str]) -> list[Check]:
    """The repository variables and secrets the workflows read, looked up through the API."""
    if not repo or not env.get("GITHUB_TOKEN"):
        names = ", ".join(f"{kind} {name}" for kind, name, _, _ in SETTINGS)
        return [Check("repository settings", "warn", "not checked (set GITHUB_TOKEN with "
                      f"read access to Actions settings to check them): {names}")]
    gh = GitHub(repo, env["GITHUB_TOKEN"], env.get("GITHUB_API_URL") or DEFAULT_API_URL)
    try:
        present = {"variable": gh.variable_names(), "secret": gh.secret_names()}
    except GitHubError as e:
        return [Check("repository settings", "missing", f"cannot list them: {e}")]
    push_mode = "DEPLOY_MODE" in present["variable"]  # its value is not needed to know it is set
    drift = "DRIFT_CHECK" in present["variable"]
    required = ({"MODERATION_DB_URL"} if drift else set()) | (
        {"KUBE_CONFIG"} if push_mode and "EKS_CLUSTER" not in present["variable"] else set())
    checks = []
    for kind, name, workflows, purpose in SETTINGS:
        if name in present[kind]:
            checks.append(Check(f"{kind} {name}", "ok", f"set ({workflows})"))
        else:
            status = "missing" if name in required else "warn"
            command = f"gh {kind} set {name} --repo {repo}"
            checks.append(Check(f"{kind} {name}", status,
                                f"not set; {purpose}. `{command}`"))
    return checks


def check_pr_permission(repo: str | None, env: dict[str, str]) -> Check:
    """Whether the workflow's GITHUB_TOKEN may open the promotion PR (off by default on GitHub),
    unless a PROMOTION_TOKEN secret opens it instead."""
    name = "Actions may open PRs"
    fix = (f"Settings > Actions > General > 'Allow GitHub Actions to create and approve pull "
           f"requests', or `gh api -X PUT repos/{repo}/actions/permissions/workflow "
           "-F can_approve_pull_request_reviews=true`")
    if not repo or not env.get("GITHUB_TOKEN"):
        return Check(name, "warn", "not checked (set GITHUB_TOKEN with administration: read); "
                     + fix)
    gh = GitHub(repo, env["GITHUB_TOKEN"], env.get("GITHUB_API_URL") or DEFAULT_API_URL)
    try:
        if "PROMOTION_TOKEN" in gh.secret_names():
            return Check(name, "ok", "secret PROMOTION_TOKEN opens the promotion PR")
        allowed = gh.workflow_permissions().get("can_approve_pull_request_reviews")
    except GitHubError as e:
        return Check(name, "warn", f"cannot read the setting ({e}); check it by hand: {fix}")
    if not allowed:
        return Check(name, "missing", "off: the propose step's POST /pulls would answer 403 after "
                     f"pushing the branch; {fix} (or set the PROMOTION_TOKEN secret)")
    return Check(name, "ok", "GITHUB_TOKEN may open the promotion PR")


def check_workflows(root: Path) -> Check:
    stale = out_of_sync(root)
    if stale:
        return Check("workflows", "missing", f"{len(stale)} file(s) differ from the generator: "
                     "`make workflows` and commit .github/workflows")
    return Check("workflows", "ok", "in sync with pipelines/ci/workflows.py and dvc.yaml")


def diagnose(root: Path | str = ".", env: dict[str, str] | None = None,
             reach: bool = True) -> list[Check]:
    """Every check, in the order a fork sets things up."""
    root = Path(root)
    env = dict(os.environ if env is None else env)
    repo = github_repo(root, env)
    steps: list[Callable[[], Check | list[Check]]] = [
        lambda: check_github_repo(root, env),
        lambda: check_dvc_remote(root, reach),
        lambda: check_overlay_pins(root, repo),
        lambda: check_argocd_apps(root),
        lambda: check_settings(repo, env),
        lambda: check_pr_permission(repo, env),
        lambda: check_workflows(root),
    ]
    checks: list[Check] = []
    for run in steps:
        result = run()
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    labels = {"ok": "ok", "warn": "warn", "missing": "MISSING"}
    return "\n".join(f"{labels[c.status]:<8} {c.name:<{width}}  {c.detail}" for c in checks)
