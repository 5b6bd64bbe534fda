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

from pipelines.ci.workflows import ACTIONS, SETTINGS, WORKFLOW_DIR, all_workflows, out_of_sync
from pipelines.core.gitops import GitError, git
from pipelines.core.versions import in_repo_remote
from pipelines.release.github import DEFAULT_API_URL, PR_CREATION_FIX, GitHub, GitHubError
from pipelines.release.retrain import IN_REPO_REMOTE_FIX
from pipelines.runtime.params import PARAMS_FILE, ParamsError, load_params

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


PRODUCTION_ENV = "production"
# Where Actions settings live, in the order GitHub lets the later ones be overridden by the first.
LEVELS = ((f"environment {PRODUCTION_ENV}", f"environment {PRODUCTION_ENV}"),
          ("repository", ""), ("organisation", "org"))
HOSTED_RUNNER = re.compile(r"(?i)^(ubuntu|windows|macos)-[\w.-]+$")
TOKEN_NEEDS = ("a fine-grained token needs Contents: write, Pull requests: write, Commit "
               "statuses: write, and Workflows: write when a change touches .github/workflows; "
               "a classic token the `repo` and `workflow` scopes")


@dataclass(frozen=True)
class Settings:
    """Which Actions variables and secrets are set, at which levels, and the variables' values."""

    levels: dict[tuple[str, str], list[str]]  # ("secret", "KUBE_CONFIG") -> ["repository"]
    values: dict[str, str]

    def has(self, kind: str, name: str) -> bool:
        return (kind, name) in self.levels


def _client(repo: str | None, env: dict[str, str], token_var: str = "GITHUB_TOKEN"
            ) -> GitHub | None:
    if not repo or not env.get(token_var):
        return None
    return GitHub(repo, env[token_var], env.get("GITHUB_API_URL") or DEFAULT_API_URL)


def read_settings(gh: GitHub) -> Settings:
    """Every level's variables and secrets, all pages (an absent environment has none)."""
    levels: dict[tuple[str, str], list[str]] = {}
    values: dict[str, str] = {}
    for level, scope in LEVELS:
        try:
            variables, secrets = gh.variables(scope), gh.secrets(scope)
        except GitHubError as e:
            if scope.startswith("environment") and e.status == 404:
                continue
            raise
        for name, value in variables.items():
            levels.setdefault(("variable", name), []).append(level)
            values.setdefault(name, value)
        for name in secrets:
            levels.setdefault(("secret", name), []).append(level)
    return Settings(levels, values)


def _required(settings: Settings) -> set[str]:
    """Settings that another setting makes necessary."""
    variables = {name for kind, name in settings.levels if kind == "variable"}
    required = {"MODERATION_DB_URL"} if "DRIFT_CHECK" in variables else set()
    if "DEPLOY_MODE" in variables and "EKS_CLUSTER" not in variables:
        required.add("KUBE_CONFIG")  # its value is not needed to know push mode is asked for
    if "AWS_ROLE_ARN" in variables:
        required.add("AWS_REGION")  # configure-aws-credentials fails without a region
    return required


def environment_workflows(root: Path) -> set[str]:
    """Workflows with a job in the production environment (the only ones that see its settings)."""
    return {name.removesuffix(".yml") for name, workflow in all_workflows(root).items()
            if any(_job_environment(job) == PRODUCTION_ENV
                   for job in workflow.get("jobs", {}).values())}


def _job_environment(job: dict[str, Any]) -> str | None:
    environment = job.get("environment")
    return environment.get("name") if isinstance(environment, dict) else environment


def check_settings(repo: str | None, settings: Settings | GitHubError | None,
                   root: Path) -> list[Check]:
    """The variables and secrets the workflows read, at environment, repository and
    organisation level, looked up through the API."""
    if settings is None:
        names = ", ".join(f"{kind} {name}" for kind, name, _, _ in SETTINGS)
        return [Check("repository settings", "warn", "not checked (set GITHUB_TOKEN with "
                      f"read access to Actions settings to check them): {names}")]
    if isinstance(settings, GitHubError):
        return [Check("repository settings", "missing", f"cannot list them: {settings}; give "
                      "doctor a token that can read them (`gh auth token` of a repository "
                      "admin; fine-grained: Administration, Environments, Secrets and "
                      "Variables: read)")]
    required = _required(settings)
    return [_setting_check(repo, settings, root, kind, name, workflows, purpose, required)
            for kind, name, workflows, purpose in SETTINGS]


def _setting_check(repo: str | None, settings: Settings, root: Path, kind: str, name: str,
                   workflows: str, purpose: str, required: set[str]) -> Check:
    command = f"`gh {kind} set {name} --repo {repo}`"
    levels = settings.levels.get((kind, name))
    if not levels:
        status = "missing" if name in required else "warn"
        return Check(f"{kind} {name}", status, f"not set; {purpose}. {command}")
    if levels == [f"environment {PRODUCTION_ENV}"]:
        blind = sorted(set(workflows.split(", ")) - environment_workflows(root))
        if blind:
            return Check(f"{kind} {name}", "missing" if name in required else "warn",
                         f"set only in environment {PRODUCTION_ENV}, which {', '.join(blind)} "
                         f"do(es) not use, so it does not see it: {command}")
    return Check(f"{kind} {name}", "ok", f"set ({', '.join(levels)}; {workflows})")


def check_pr_permission(gh: GitHub | None, settings: Settings | GitHubError | None
                        ) -> list[Check]:
    """Whether the workflow's GITHUB_TOKEN may open the promotion PR (off by default on GitHub,
    for the repository and for an organisation), unless a PROMOTION_TOKEN secret opens it."""
    name = "Actions may open PRs"
    repo = gh.repo if gh else "<owner>/<repo>"
    fix = (f"{PR_CREATION_FIX}; or `gh api -X PUT repos/{repo}/actions/permissions/workflow "
           "-F can_approve_pull_request_reviews=true`")
    if gh is None:
        return [Check(name, "warn", "not checked (set GITHUB_TOKEN with administration: read); "
                      + fix)]
    if isinstance(settings, Settings) and settings.has("secret", "PROMOTION_TOKEN"):
        return [Check(name, "ok", "secret PROMOTION_TOKEN opens the promotion PR")]
    try:
        allowed = gh.workflow_permissions().get("can_approve_pull_request_reviews")
    except GitHubError as e:
        return [Check(name, "warn", f"cannot read the setting ({e}); check it by hand: {fix}")]
    if not allowed:
        return [Check(name, "missing", "off: the propose step's POST /pulls would answer 403 "
                      f"after pushing the branch; {fix}")]
    return [_org_pr_permission(gh) or Check(name, "ok", "GITHUB_TOKEN may open the promotion PR")]


def _org_pr_permission(gh: GitHub) -> Check | None:
    """An organisation's refusal overrides the repository's setting (shown greyed out there)."""
    name, org = "Actions may open PRs", gh.owner
    fix = (f"the organisation's Settings > Actions > General > Workflow permissions > 'Allow "
           f"GitHub Actions to create and approve pull requests', or `gh api -X PUT "
           f"orgs/{org}/actions/permissions/workflow -F can_approve_pull_request_reviews=true`"
           "; or set the PROMOTION_TOKEN secret")
    try:
        if not gh.owner_is_organisation():
            return None
        allowed = gh.workflow_permissions(org=True).get("can_approve_pull_request_reviews")
    except GitHubError as e:
        return Check(name, "warn", f"the repository allows it, but the organisation {org}'s "
                     f"setting cannot be read ({e}; it needs an organisation owner): {fix}")
    if not allowed:
        return Check(name, "missing", f"the repository allows it but the organisation {org} "
                     f"does not, and the organisation's setting wins: {fix}")
    return None


def check_actions_enabled(gh: GitHub | None) -> list[Check]:
    """Actions may run here at all (an administrator, or an organisation policy, can turn them
    off), and may run the third-party actions the workflows use."""
    if gh is None:
        return []
    name, fix = "Actions enabled", (
        "Settings > Actions > General > Actions permissions > 'Allow all actions and reusable "
        f"workflows', or `gh api -X PUT repos/{gh.repo}/actions/permissions -F enabled=true "
        "-f allowed_actions=all`")
    try:
        permissions = gh.actions_permissions()
    except GitHubError as e:
        return [Check(name, "warn", f"cannot read the setting ({e}); check it by hand: {fix}")]
    if not permissions.get("enabled"):
        return [Check(name, "missing", f"Actions are disabled for {gh.repo}: {fix}")]
    allowed = permissions.get("allowed_actions", "all")
    if allowed != "all":
        used = ", ".join(sorted({repo for repo, _, _ in ACTIONS.values()}))
        return [Check(name, "warn", f"allowed_actions={allowed}: make sure the allow list "
                      f"includes {used}, or {fix}")]
    return [Check(name, "ok", "all actions allowed")]


def check_workflows_enabled(gh: GitHub | None, root: Path) -> list[Check]:
    """Each workflow is active on GitHub: a fork's workflows start disabled (disabled_fork)."""
    if gh is None:
        return []
    name = "workflows enabled"
    try:
        states = gh.workflow_states()
    except GitHubError as e:
        return [Check(name, "warn", f"cannot list them ({e})")]
    ours = sorted(f"{WORKFLOW_DIR}/{p.name}" for p in (root / WORKFLOW_DIR).glob("*.yml"))
    if not states and ours:
        return [Check(name, "missing", f"GitHub lists no workflow for {gh.repo}: push "
                      f"{WORKFLOW_DIR} to the default branch; on a fork, also open the Actions "
                      "tab and press 'I understand my workflows, go ahead and enable them'")]
    off = [path for path in ours if states.get(path, "active").startswith("disabled")]
    if off:
        commands = "; ".join(f"`gh workflow enable {Path(p).name} --repo {gh.repo}`" for p in off)
        return [Check(name, "missing", f"disabled on GitHub: {', '.join(off)} "
                      f"({', '.join(states[p] for p in off)}); a fork's workflows stay off until "
                      f"enabled: the Actions tab's 'I understand my workflows, go ahead and "
                      f"enable them', or {commands}")]
    return [Check(name, "ok", f"{len(ours)} workflow(s) active")]


def check_promotion_token(repo: str | None, settings: Settings | GitHubError | None,
                          env: dict[str, str]) -> list[Check]:
    """The token that opens promotion PRs can do so: a classic token's scopes are in
    X-OAuth-Scopes; a fine-grained or App token's permissions are not readable."""
    name = "PROMOTION_TOKEN scopes"
    gh = _client(repo, env, "PROMOTION_TOKEN")
    if gh is None:
        if isinstance(settings, Settings) and settings.has("secret", "PROMOTION_TOKEN"):
            return [Check(name, "warn", "not checked: run `PROMOTION_TOKEN=<the token> make "
                          f"doctor` to check it; {TOKEN_NEEDS}")]
        return []
    try:
        scopes = gh.token_scopes()
    except GitHubError as e:
        return [Check(name, "missing", f"GitHub refuses the token ({e}): create a new one; "
                      + TOKEN_NEEDS)]
    if scopes is None:
        return [Check(name, "warn", "a fine-grained or GitHub App token, whose permissions "
                      f"GitHub does not reveal: check them by hand; {TOKEN_NEEDS}")]
    return [_classic_scopes_check(name, set(scopes))]


def _classic_scopes_check(name: str, scopes: set[str]) -> Check:
    if "repo" not in scopes:
        return Check(name, "missing", f"classic token with scopes {sorted(scopes)}: it cannot "
                     "push the promotion branch or open its PR; add the `repo` scope (GitHub > "
                     "Settings > Developer settings > Personal access tokens)")
    if "workflow" not in scopes:
        return Check(name, "warn", "classic token without the `workflow` scope: a promotion "
                     "that changes .github/workflows (`make workflows` after a dvc.yaml edit) "
                     "is refused on push; add the `workflow` scope")
    return Check(name, "ok", "classic token with the repo and workflow scopes")


def check_train_runner(gh: GitHub | None, settings: Settings | GitHubError | None
                       ) -> list[Check]:
    """TRAIN_RUNNER names a label some self-hosted runner of the repository or its organisation
    has; otherwise the training job waits for a runner that never comes."""
    label = settings.values.get("TRAIN_RUNNER") if isinstance(settings, Settings) else None
    if gh is None or not label:
        return []
    name = "TRAIN_RUNNER runner"
    if HOSTED_RUNNER.match(label):
        return [Check(name, "ok", f"`{label}` is a GitHub-hosted runner")]
    labels, unread = _runner_labels(gh)
    if label.lower() in labels:
        return [Check(name, "ok", f"a self-hosted runner has the label `{label}`")]
    fix = (f"register one with that label (Settings > Actions > Runners > New self-hosted "
           f"runner; `./config.sh --labels {label}`), or `gh variable delete TRAIN_RUNNER "
           f"--repo {gh.repo}` to train on a hosted runner")
    where = "this repository" + ("" if unread else " or its organisation")
    return [Check(name, "warn" if unread else "missing",
                  f"no self-hosted runner of {where} has the label `{label}`{unread}: the "
                  f"training job would wait for one until it times out; {fix}")]


def _runner_labels(gh: GitHub) -> tuple[set[str], str]:
    """Lower-cased labels of the repository's and organisation's runners, and a note on what
    could not be read."""
    labels, unread = set(), ""
    for org in (False, True):
        try:
            if org and not gh.owner_is_organisation():
                break
            labels |= {label.lower() for label in gh.runner_labels(org=org)}
        except GitHubError as e:
            unread += f" ({'organisation' if org else 'repository'} runners unreadable: {e})"
    return labels, unread


TASK_GUIDE = "docs/tasks.md"


def check_behaviour_task(root: Path) -> Check:
    """The behavioural checks are declared for the task the data has: their lexicons and floors
    are part of the task's definition (an insult alone is offensive, not hateful)."""
    name = "behavioural checks"
    try:
        params = load_params(root / PARAMS_FILE)
    except ParamsError as e:
        return Check(name, "missing", f"{e}")
    behaviour = params.evaluate.behaviour
    checks = ", ".join(behaviour.checks) or "none"
    if list(behaviour.written_for) != list(params.data.labels):
        return Check(name, "warn", f"data.labels are {params.data.labels} but the behavioural "
                     f"checks ({checks}) were written for {behaviour.written_for} "
                     "(evaluate.behaviour.written_for): declare your task's checks in "
                     "evaluate.behaviour.checks and their floors in gate.floors.behaviour, then "
                     f"set written_for to your labels ({TASK_GUIDE})")
    return Check(name, "ok", f"written for {behaviour.written_for}: {checks}")


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
    gh = _client(repo, env)
    settings = _settings_or_error(gh)
    steps: list[Callable[[], Check | list[Check]]] = [
        lambda: check_github_repo(root, env),
        lambda: check_dvc_remote(root, reach),
        lambda: check_overlay_pins(root, repo),
        lambda: check_argocd_apps(root),
        lambda: check_actions_enabled(gh),
        lambda: check_workflows_enabled(gh, root),
        lambda: check_settings(repo, settings, root),
        lambda: check_pr_permission(gh, settings),
        lambda: check_promotion_token(repo, settings, env),
        lambda: check_train_runner(gh, settings),
        lambda: check_workflows(root),
        lambda: check_behaviour_task(root),
    ]
    checks: list[Check] = []
    for run in steps:
        result = run()
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def _settings_or_error(gh: GitHub | None) -> Settings | GitHubError | None:
    if gh is None:
        return None
    try:
        return read_settings(gh)
    except GitHubError as e:
        return e


def format_checks(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    labels = {"ok": "ok", "warn": "warn", "missing": "MISSING"}
    return "\n".join(f"{labels[c.status]:<8} {c.name:<{width}}  {c.detail}" for c in checks)
