"""Steps of the retrain workflow that are not a stage of their own: the job summary, handing the
evaluated outputs to the propose job, the image, and the promotion branch and pull request."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from pipelines.core.data import file_md5
from pipelines.core.decision import COMPARE_DIR, DECISION_FILE, REJECT, Decision
from pipelines.core.gitops import changed_files, commit_files, detached_worktree, head, push
from pipelines.core.production import (
    POINTER,
    WEIGHTS_POINTER,
    ProductionRecord,
    promote,
    promotion_branch,
    read_pointer,
)
from pipelines.core.tools import dvc
from pipelines.core.versions import default_remote, in_repo_remote
from pipelines.deploy.pins import (
    K8S_DIR,
    PinError,
    diff_markdown,
    digest_from_facts,
    read_pin,
    set_image,
)
from pipelines.release import image
from pipelines.release.checks import (
    PushToken,
    client,
    push_token,
    refuse_workflow_push,
    request_ci,
    workflow_changes,
)
from pipelines.release.github import open_or_update_pr
from pipelines.runtime.errors import PipelineError
from pipelines.runtime.metadata import ModelMetadata, is_model_dir
from pipelines.runtime.params import load_params
from service.bento import BENTO_NAME, bento_version, bentoml_home

# The markdown reports a retrain produces, in the order a reviewer reads them.
SUMMARY_REPORTS = (
    ("Comparison with production", Path("reports/compare/pr_body.md")),
    ("Load test", Path("reports/loadtest/summary.md")),
)


def job_summary(reports: tuple[tuple[str, Path], ...] = SUMMARY_REPORTS) -> str:
    """Markdown of every report that exists, and a line for each one that a failed step left out."""
    parts = ["# Retrain"]
    for title, path in reports:
        if path.exists():
            parts.append(path.read_text(encoding="utf-8").strip())
        else:
            parts.append(f"## {title}\n\n`{path}` was not produced: the step that writes it "
                         "failed or did not run (see the step log above).")
    return "\n\n".join(parts) + "\n"


def write_job_summary(out: Path | None = None) -> Path | None:
    """Append the summary to GitHub's job summary file (GITHUB_STEP_SUMMARY), or print it."""
    target = out or (Path(os.environ["GITHUB_STEP_SUMMARY"])
                     if os.environ.get("GITHUB_STEP_SUMMARY") else None)
    text = job_summary()
    if target is None:
        print(text, end="")
        return None
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(text)
    return target


# ---------------------------------------------------------------------------------------------
# Handing the evaluation to the propose job: DVC outputs out, and back in

DECISION = COMPARE_DIR / DECISION_FILE
PR_BODY = Path("reports/compare/pr_body.md")
COMPARISON = Path("reports/compare/comparison.json")
LOADTEST_SUMMARY = Path("reports/loadtest/summary.json")
LOADTEST_MARKDOWN = Path("reports/loadtest/summary.md")
IMAGE_FACTS = Path("reports/image")  # facts.md (a PR body section), facts.json, sbom.cdx.json
CANDIDATE = Path("models/candidate")
CANDIDATE_METRICS = Path("reports/metrics/candidate.json")
ENVIRONMENT = "production"
# The commit status the propose step sets on the promotion commit: branch protection can require
# it where `ci` cannot run (a PR pushed with GITHUB_TOKEN starts no workflow).
GATE_STATUS_CONTEXT = "moderation/gate"


class RetrainError(PipelineError):
    """A retrain step cannot go on; the message says what is missing and what to run."""


IN_REPO_REMOTE_FIX = ("configure an object store as the default DVC remote: `dvc remote add -d -f "
                      "origin s3://<bucket>/<path>` (then `dvc push`, commit .dvc/config); "
                      "docs/workflows.md, 'Use this template'")


def refuse_in_repo_remote(root: Path | str = ".") -> None:
    """The workflow never pushes model weights into git (GitHub rejects files over 100 MiB)."""
    remote = in_repo_remote(root)
    if remote is not None:
        raise RetrainError(f"the default DVC remote is the in-repo folder {remote.name}/: pushing "
                           "the models there would put them into git. The retrain workflow needs "
                           f"a remote outside git: {IN_REPO_REMOTE_FIX}")


# The remote kinds the workflows can reach: dvc-s3 is the only DVC plugin in the lock, and AWS
# (OIDC) the only cloud the workflows authenticate. An S3-compatible store (MinIO, R2, GCS's XML
# API) is an s3:// remote with an `endpointurl`.
SUPPORTED_REMOTE_SCHEMES = ("s3",)


def unsupported_remote(url: str | None) -> str | None:
    """Why the workflows cannot use a remote with this URL, or None."""
    if not url or "://" not in url:
        return None  # a folder: the in-repo check decides
    scheme = url.split("://", 1)[0].lower()
    if scheme in SUPPORTED_REMOTE_SCHEMES:
        return None
    return (f"the DVC remote {url} is a {scheme}:// remote; the workflows support s3:// only "
            "(dvc-s3 is the one DVC plugin in requirements.lock, and AWS through OIDC the one "
            "cloud they authenticate). Use an S3 bucket, or an S3-compatible store as an s3:// "
            "remote with `dvc remote modify origin endpointurl https://...` "
            "(docs/workflows.md, 'Use this template')")


def refuse_unsupported_remote(root: Path | str = ".") -> None:
    _, url = default_remote(root)
    reason = unsupported_remote(url)
    if reason:
        raise RetrainError(reason)


# What a fork's new remote must hold before the first retrain: the data version and the production
# model that main's pointers name (the bundled ones are only in the in-repo demo remote).
SEED_TARGETS = ("data.dvc", "models/production.dvc")


def use_remote(url: str, endpoint_url: str | None = None, name: str = "origin",
               root: Path | str = ".") -> str:
    """Make `url` the default DVC remote and upload what main's pointers name to it. A plain
    `dvc push` after `dvc remote add -d -f` uploads only what the local cache holds, and a fresh
    clone's cache lacks the bundled production model: the next retrain's `make production`
    would then find it nowhere."""
    reason = unsupported_remote(url) or (None if "://" in url else
                                         f"{url} is a folder, not an object store URL")
    if reason:
        raise RetrainError(reason)
    targets = [t for t in SEED_TARGETS if (Path(root) / t).exists()]
    # from the current default remote into the cache, then out to the new one
    dvc("fetch", *targets, root=root, error=RetrainError)
    dvc("remote", "add", "--default", "--force", name, url, root=root, error=RetrainError)
    if endpoint_url:
        dvc("remote", "modify", name, "endpointurl", endpoint_url, root=root, error=RetrainError)
    dvc("push", "--remote", name, *targets, root=root, error=RetrainError)
    return (f"retrain: {name} = {url} is the default DVC remote and holds {', '.join(targets)}; "
            "commit .dvc/config")


def preflight(default_branch: str, promotion_token: bool, remote: str = "origin",
              root: Path | str = ".") -> str:
    """What would fail the run after training, checked before it: the DVC remote (inside git,
    or a kind the workflows cannot reach) and a workflow change only PROMOTION_TOKEN can push."""
    refuse_in_repo_remote(root)
    refuse_unsupported_remote(root)
    changed = workflow_changes(f"{remote}/{default_branch}", root=root)
    refuse_workflow_push(changed, "PROMOTION_TOKEN" if promotion_token else "GITHUB_TOKEN")
    _, url = default_remote(root)
    return (f"retrain: preflight passed (DVC remote {url}; "
            + (f"workflow files changed: {', '.join(changed)}, pushed with PROMOTION_TOKEN)"
               if changed else "no workflow file changed)"))


def push_outputs() -> str:
    """`dvc push` everything the workspace tracks (data, production, the stages' outputs) and
    the run-cache, so that the run on main after the merge restores the stages instead of
    re-running them."""
    refuse_in_repo_remote()
    refuse_unsupported_remote()
    out = dvc("push", "--run-cache", error=RetrainError)
    return f"{out.strip()}\nretrain: pipeline outputs and run-cache pushed to the DVC remote"


def read_decision(path: Path = DECISION) -> Decision:
    if not path.is_file():
        raise RetrainError(f"{path} not found: run `make compare` first (in the propose job it "
                           "comes with the retrain-reports artifact)")
    return Decision.load(path)


def restore(decision_path: Path = DECISION, candidate: Path = CANDIDATE) -> str:
    """Pull the evaluated outputs named by dvc.lock and check they are the model that was judged."""
    decision = read_decision(decision_path)
    try:
        dvc("pull", error=RetrainError)
    except RetrainError as e:
        raise RetrainError(f"{e}\nThe evaluate job's `retrain push-outputs` puts these outputs in "
                           "the DVC remote") from None
    found = ModelMetadata.load(candidate).version if is_model_dir(candidate) else None
    if found != decision.candidate_version:
        raise RetrainError(f"{candidate} holds {found}, but {decision_path} judged "
                           f"{decision.candidate_version}: dvc.lock and reports/ must come from "
                           "the same evaluate run (its retrain-reports artifact)")
    return f"retrain: restored {found} into {candidate} from the DVC remote"


# ---------------------------------------------------------------------------------------------
# What to propose, the image, and the promotion pull request


def nothing_to_propose(decision: Decision, production: ProductionRecord | None) -> str | None:
    """Why no promotion should be proposed (a reject, or production already runs it), or None."""
    version = decision.candidate_version
    if decision.verdict == REJECT:
        return f"the gate rejected {version} ({', '.join(decision.failed)})"
    if production is not None and production.version == version:
        # Merging a promotion brings its data.dvc to the default branch and retrains the same
        # model there; this is what stops that loop.
        return f"production already runs {version} (models/production.yaml)"
    return None


def _skip_reason() -> str | None:
    return nothing_to_propose(read_decision(), read_pointer())


def plan(output: Path | None = None) -> bool:
    """Whether the propose job should run, decided in the evaluate job (which has the decision
    and the pointer at hand), so that a run with nothing to propose starts no second job:
    `propose=true|false` to GITHUB_OUTPUT."""
    reason = _skip_reason()
    target = output or (Path(os.environ["GITHUB_OUTPUT"]) if os.environ.get("GITHUB_OUTPUT")
                        else None)
    if target is not None:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(f"propose={'false' if reason else 'true'}\n")
    print(f"plan: nothing to propose: {reason}" if reason else
          f"plan: propose {read_decision().candidate_version}")
    return reason is None


def image_name(root: Path | str = ".", env: dict[str, str] | None = None) -> str:
    """Registry/name of the service image: IMAGE_NAME when configured; else the production
    overlay's, moved under the repository owner when it is a ghcr.io image of another owner (the
    workflow token can push only to its own owner's packages)."""
    env = dict(os.environ if env is None else env)
    if env.get("IMAGE_NAME"):
        return env["IMAGE_NAME"]
    pin = read_pin(ENVIRONMENT, Path(root))
    name = pin.new_name or pin.name
    owner = env.get("GITHUB_REPOSITORY_OWNER", "").lower()
    registry, _, path = name.partition("/")
    if registry == "ghcr.io" and owner and path.split("/")[0] != owner:
        return f"ghcr.io/{owner}/{path.split('/')[-1]}"
    return name


def check_docker() -> None:
    """Fail with a clear message unless a Docker engine answers (containerize needs one)."""
    host = os.environ.get("DOCKER_HOST", "the default socket")
    try:
        result = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise RetrainError("no Docker engine reachable: the docker CLI is not installed. "
                           "`bentoml containerize` needs Docker; run this step where Docker "
                           "runs (the retrain workflow's runner does)") from None
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no answer"]
        raise RetrainError(f"no Docker engine reachable at {host} ({reason[0]}). "
                           "`bentoml containerize` needs Docker; run this step where Docker "
                           "runs (the retrain workflow's runner does)")


def build_image(candidate: Path = CANDIDATE) -> str | None:
    """Containerise the candidate's Bento and push it as <overlay image>:<Bento version>."""

    reason = _skip_reason()
    if reason:
        print(f"image: nothing to build: {reason}")
        return None
    check_docker()
    tag = bento_version(candidate)
    reference = f"{image_name()}:{tag}"
    # `make bento` builds into the repository's store (.bentoml); a workflow step outside make
    # would otherwise look in ~/bentoml and not find it.
    os.environ["BENTOML_HOME"] = str(bentoml_home())
    # the same build `make image` runs here, on the upstream base
    build_s = image.build(f"{BENTO_NAME}:{tag}", reference, backend="docker")
    cmd = ["docker", "push", reference]
    print(f"image: {' '.join(cmd)}", flush=True)
    if subprocess.run(cmd, check=False).returncode != 0:
        raise RetrainError(f"`{' '.join(cmd)}` failed (output above)")
    # after the push the facts carry the registry's digest (the pin the cluster pulls)
    sbom = image.sbom(reference, IMAGE_FACTS / "sbom.cdx.json", backend="docker")
    image.write_facts(image.facts(reference, f"{BENTO_NAME}:{tag}", "docker", build_s, sbom),
                      IMAGE_FACTS)
    return reference


def _loadtest_passed(version: str) -> dict[str, Any]:
    if not LOADTEST_SUMMARY.is_file():
        raise RetrainError(f"{LOADTEST_SUMMARY} not found: the load-test gate did not run "
                           "(`make loadtest`); nothing is proposed without it")
    summary = json.loads(LOADTEST_SUMMARY.read_text(encoding="utf-8"))
    if summary["model_version"] != version or not summary["verdict"]["passed"]:
        raise RetrainError(f"{LOADTEST_SUMMARY}: the load test of {version} did not pass "
                           f"(it tested {summary['model_version']}, passed: "
                           f"{summary['verdict']['passed']})")
    return summary


def promotion_body(deployment_diff: str, source: str) -> str:
    """PR body: the comparison report, the load-test summary, the rendered deployment diff."""
    facts = IMAGE_FACTS / "facts.md"
    parts = [PR_BODY.read_text(encoding="utf-8").strip(),
             LOADTEST_MARKDOWN.read_text(encoding="utf-8").strip(),
             *([facts.read_text(encoding="utf-8").strip()] if facts.is_file() else []),
             deployment_diff.strip(),
             f"<sub>Opened by `python -m pipelines retrain propose` from {source[:12]}; merging "
             "it releases the model as a canary.</sub>"]
    return "\n\n".join(parts) + "\n"


def lineage_files(root: Path | str = ".") -> list[str]:
    """dvc.lock and the metrics and plots files DVC tracks in git (`cache: false`): with them in
    the promotion commit, `dvc metrics diff main` and `dvc plots diff main` work in the PR."""
    from dvc.repo import Repo

    root = Path(root).resolve()
    with Repo(str(root)) as repo:
        tracked = {Path(str(out.fs_path)).relative_to(root).as_posix()
                   for stage in repo.index.stages for out in stage.outs
                   if not out.use_cache and (out.metric or out.plot)}
    return ["dvc.lock", *sorted(tracked)]


def pr_body_images(comparison: Path = COMPARISON) -> list[str]:
    """The plots the PR body shows (comparison.json's `plots`), relative to the repository. The
    promotion commit carries them: on Actions the body links them on the promotion branch."""
    if not comparison.is_file():
        raise RetrainError(f"{comparison} not found: it comes with the retrain-reports artifact "
                           "of the evaluate job")
    plots = json.loads(comparison.read_text(encoding="utf-8")).get("plots", {})
    return sorted(Path(os.path.relpath(path)).as_posix() for path in plots.values())


def _copy_lineage(tree: Path) -> list[str]:
    """Copy dvc.lock, the metrics/plots of the evaluation and the PR body's images into tree;
    their paths."""
    import shutil

    paths = lineage_files(".") + pr_body_images()
    for rel in paths:
        if not Path(rel).is_file():
            raise RetrainError(f"{rel} not found: it comes with the retrain-reports artifact "
                               "of the evaluate job")
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(rel, tree / rel)
    return paths


def pushed_image(tag: str, facts_file: Path = IMAGE_FACTS / "facts.json") -> tuple[str, str]:
    """(registry/name, digest) of the candidate's image as `retrain image` pushed it: production
    is pinned by that digest, never by the tag."""
    try:
        name, digest = digest_from_facts(facts_file)
    except PinError as e:
        raise RetrainError(f"{e}; production is pinned by the pushed image's digest") from None
    facts = json.loads(facts_file.read_text(encoding="utf-8"))
    if facts.get("bento") != f"{BENTO_NAME}:{tag}":
        raise RetrainError(f"{facts_file} describes {facts.get('bento')}, not the candidate's "
                           f"{BENTO_NAME}:{tag}: run `python -m pipelines retrain image` again")
    return name, digest


def _promotion_commit(tree: Path, source: str, tag: str, image: tuple[str, str],
                      decision: Decision, holdout_md5: str,
                      source_branch: str) -> tuple[str, list[str], str, str]:
    """In tree (a checkout of source): pin production to the pushed image's digest, promote the
    candidate, add the evaluation's dvc.lock, metrics and plots, commit exactly those files.
    Returns (commit, files changed, image reference, deployment diff)."""
    candidate, metrics = CANDIDATE.resolve(), CANDIDATE_METRICS.resolve()
    version = decision.candidate_version
    name, digest = image
    lineage = _copy_lineage(tree)
    with contextlib.chdir(tree):
        refuse_in_repo_remote(".")
        _, pin = set_image(ENVIRONMENT, digest=digest, new_name=name)
        promote(candidate, metrics, holdout_md5, bento_tag=f"{BENTO_NAME}:{tag}",
                image=pin.reference, push=True)
        paths = [(K8S_DIR / "overlays" / ENVIRONMENT / "kustomization.yaml").as_posix(),
                 POINTER.as_posix(), WEIGHTS_POINTER.as_posix(), *lineage]
        message = (f"Promote {version} to production\n\nImage: {pin.reference}\n"
                   f"Verdict: {decision.verdict}\nSource: {source_branch} @ {source}\n")
        commit = commit_files(".", source, paths, message)
        changed = changed_files(".", source, commit)
        stray = sorted(set(changed) - set(paths))
        if stray:  # never push a promotion that carries anything else
            raise RetrainError(f"the promotion commit would also change {stray}")
        return commit, changed, pin.reference, diff_markdown(ENVIRONMENT, against=source)


def _run_url() -> str | None:
    """The workflow run's page, when running on Actions."""
    parts = [os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    return f"{parts[0]}/{parts[1]}/actions/runs/{parts[2]}" if all(parts) else None


def propose(source_branch: str, remote: str = "origin", token: PushToken | None = None,
            gh=None, params_file: Path = Path("params.yaml")) -> dict[str, Any] | None:
    """Commit the production pin and model pointer on promote/<source_branch>, push it, and open
    or update its one pull request. None (and no branch) when there is nothing to propose.

    The promotion is built in a temporary worktree, so the working tree is left as it was and a
    rerun proposes the same change again."""

    reason = _skip_reason()
    if reason:
        print(f"propose: nothing to propose: {reason}")
        return None
    token = token or push_token()
    if gh is None:  # before any change: a missing token or repository fails here
        gh = client(token)
    decision = read_decision()
    version = decision.candidate_version
    found = ModelMetadata.load(CANDIDATE).version
    if found != version:
        raise RetrainError(f"{CANDIDATE} holds {found} but {DECISION} judged {version}: "
                           "run `python -m pipelines retrain restore`")
    _loadtest_passed(version)
    holdout_md5 = file_md5(load_params(params_file).data.holdout_file)
    source, tag = head(), bento_version(CANDIDATE)
    pushed = pushed_image(tag)  # local facts first: no API call for a job that cannot pin
    refuse_workflow_push(workflow_changes(f"{remote}/{gh.default_branch()}", source), token.name)
    branch = promotion_branch(source_branch)
    with detached_worktree(source) as tree:
        commit, changed, image, deployment_diff = _promotion_commit(
            tree, source, tag, pushed, decision, holdout_md5, source_branch)
        push(tree, commit, branch, remote, token.value)
    print(f"propose: pushed {branch} ({commit[:12]}): {', '.join(changed)}")
    action, pull = open_or_update_pr(gh, branch, gh.default_branch(),
                                     f"Promote {version} to production",
                                     promotion_body(deployment_diff, source))
    print(f"propose: {action} pull request #{pull['number']} {pull['html_url']}")
    gh.set_status(commit, "success", GATE_STATUS_CONTEXT,
                  f"{decision.verdict.upper()}: {version} passed the gate and the load test",
                  _run_url())
    print(f"propose: commit status {GATE_STATUS_CONTEXT}=success on {commit[:12]}")
    print(f"propose: {request_ci(gh, branch, token)}")
    return {"branch": branch, "commit": commit, "action": action, "pull": pull,
            "image": image, "files": changed}
