"""Steps of the retrain workflow that are not a stage of their own: the job summary, handing the
evaluated outputs to the propose job, the image, and the promotion branch and pull request."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from pipelines.core.data import file_md5, in_repo_remote, remote_objects
from pipelines.core.errors import PipelineError
from pipelines.core.gitops import changed_files, commit_files, detached_worktree, head, push
from pipelines.core.metadata import read_metadata
from pipelines.core.params import load_params
from pipelines.core.production import POINTER, WEIGHTS_POINTER, promote, read_pointer
from pipelines.core.tools import dvc
from pipelines.deploy.pins import K8S_DIR, diff_markdown, read_pin, set_image
from pipelines.release.github import GitHub, open_or_update_pr
from service.bento import BENTO_NAME, bento_version

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

DECISION = Path("reports/compare/decision.json")
PR_BODY = Path("reports/compare/pr_body.md")
LOADTEST_SUMMARY = Path("reports/loadtest/summary.json")
LOADTEST_MARKDOWN = Path("reports/loadtest/summary.md")
CANDIDATE = Path("models/candidate")
CANDIDATE_METRICS = Path("reports/metrics/candidate.json")
PROMOTION_PREFIX = "promote/"
ENVIRONMENT = "production"


class RetrainError(PipelineError):
    """A retrain step cannot go on; the message says what is missing and what to run."""


def push_outputs() -> str:
    """`dvc push` everything the workspace tracks (data, production, the stages' outputs)."""
    out = dvc("push", error=RetrainError)
    remote = in_repo_remote()
    where = (f"the in-repo remote {remote.relative_to(Path.cwd().resolve())}/ (it travels to the "
             "propose job inside the retrain-reports artifact)" if remote
             else "the default DVC remote")
    return f"{out.strip()}\nretrain: pipeline outputs pushed to {where}"


def read_decision(path: Path = DECISION) -> dict[str, Any]:
    if not path.is_file():
        raise RetrainError(f"{path} not found: run `make compare` first (in the propose job it "
                           "comes with the retrain-reports artifact)")
    return json.loads(path.read_text(encoding="utf-8"))


def restore(decision_path: Path = DECISION, candidate: Path = CANDIDATE) -> str:
    """Pull the evaluated outputs named by dvc.lock and check they are the model that was judged."""
    decision = read_decision(decision_path)
    try:
        dvc("pull", error=RetrainError)
    except RetrainError as e:
        raise RetrainError(f"{e}\nThe evaluate job's `retrain push-outputs` puts these outputs in "
                           "the DVC remote (with the in-repo remote, they travel in the "
                           "retrain-reports artifact's .dvc/storage/)") from None
    found = read_metadata(candidate)["version"] if (candidate / "metadata.json").exists() else None
    if found != decision["candidate_version"]:
        raise RetrainError(f"{candidate} holds {found}, but {decision_path} judged "
                           f"{decision['candidate_version']}: dvc.lock and reports/ must come from "
                           "the same evaluate run (its retrain-reports artifact)")
    return f"retrain: restored {found} into {candidate} from the DVC remote"


# ---------------------------------------------------------------------------------------------
# What to propose, the image, and the promotion pull request


def nothing_to_propose(decision: dict[str, Any], production: dict[str, Any] | None) -> str | None:
    """Why no promotion should be proposed (a reject, or production already runs it), or None."""
    version = decision["candidate_version"]
    if decision["verdict"] == "reject":
        return f"the gate rejected {version} ({', '.join(decision['failed'])})"
    if production is not None and production["version"] == version:
        # Merging a promotion brings its data.dvc to the default branch and retrains the same
        # model there; this is what stops that loop.
        return f"production already runs {version} (models/production.yaml)"
    return None


def _skip_reason() -> str | None:

    return nothing_to_propose(read_decision(), read_pointer())


def image_name(root: Path | str = ".") -> str:
    """Registry/name of the service image, as the production overlay pins it (one place)."""

    pin = read_pin(ENVIRONMENT, Path(root))
    return pin.new_name or pin.name


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
    for cmd in (["bentoml", "containerize", f"{BENTO_NAME}:{tag}", "--image-tag", reference],
                ["docker", "push", reference]):
        print(f"image: {' '.join(cmd)}", flush=True)
        if subprocess.run(cmd, check=False).returncode != 0:
            raise RetrainError(f"`{' '.join(cmd)}` failed (output above)")
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
    parts = [PR_BODY.read_text(encoding="utf-8").strip(),
             LOADTEST_MARKDOWN.read_text(encoding="utf-8").strip(),
             deployment_diff.strip(),
             f"<sub>Opened by `python -m pipelines retrain propose` from {source[:12]}; merging "
             "it releases the model as a canary.</sub>"]
    return "\n\n".join(parts) + "\n"


def _promotion_commit(tree: Path, source: str, tag: str, decision: dict[str, Any],
                      holdout_md5: str, source_branch: str) -> tuple[str, list[str], str, str]:
    """In tree (a checkout of source): move the production pin, promote the candidate, commit
    exactly those files. Returns (commit, files changed, image reference, deployment diff)."""
    candidate, metrics = CANDIDATE.resolve(), CANDIDATE_METRICS.resolve()
    version = decision["candidate_version"]
    with contextlib.chdir(tree):
        _, pin = set_image(ENVIRONMENT, tag=tag)
        promote(candidate, metrics, holdout_md5, bento_tag=f"{BENTO_NAME}:{tag}",
                image=pin.reference, push=True)
        paths = [(K8S_DIR / "overlays" / ENVIRONMENT / "kustomization.yaml").as_posix(),
                 POINTER.as_posix(), WEIGHTS_POINTER.as_posix()]
        storage = in_repo_remote(".")
        if storage is not None:  # the demo remote lives in git: the weights go in the commit
            here = Path.cwd().resolve()
            paths += [p.relative_to(here).as_posix()
                      for p in remote_objects(WEIGHTS_POINTER)]
        message = (f"Promote {version} to production\n\nImage: {pin.reference}\n"
                   f"Verdict: {decision['verdict']}\nSource: {source_branch} @ {source}\n")
        commit = commit_files(".", source, paths, message)
        changed = changed_files(".", source, commit)
        stray = sorted(set(changed) - set(paths))
        if stray:  # never push a promotion that carries anything else
            raise RetrainError(f"the promotion commit would also change {stray}")
        return commit, changed, pin.reference, diff_markdown(ENVIRONMENT, against=source)


def propose(source_branch: str, remote: str = "origin", token: str | None = None,
            gh=None, params_file: Path = Path("params.yaml")) -> dict[str, Any] | None:
    """Commit the production pin and model pointer on promote/<source_branch>, push it, and open
    or update its one pull request. None (and no branch) when there is nothing to propose.

    The promotion is built in a temporary worktree, so the working tree is left as it was and a
    rerun proposes the same change again."""

    reason = _skip_reason()
    if reason:
        print(f"propose: nothing to propose: {reason}")
        return None
    if gh is None:  # before any change: a missing token or repository fails here
        gh = GitHub.from_env()
    decision = read_decision()
    version = decision["candidate_version"]
    found = read_metadata(CANDIDATE)["version"]
    if found != version:
        raise RetrainError(f"{CANDIDATE} holds {found} but {DECISION} judged {version}: "
                           "run `python -m pipelines retrain restore`")
    _loadtest_passed(version)
    holdout_md5 = file_md5(load_params(params_file).data.holdout_file)
    source, tag = head(), bento_version(CANDIDATE)
    branch = f"{PROMOTION_PREFIX}{source_branch}"
    with detached_worktree(source) as tree:
        commit, changed, image, deployment_diff = _promotion_commit(
            tree, source, tag, decision, holdout_md5, source_branch)
        push(tree, commit, branch, remote, token)
    print(f"propose: pushed {branch} ({commit[:12]}): {', '.join(changed)}")
    action, pull = open_or_update_pr(gh, branch, gh.default_branch(),
                                     f"Promote {version} to production",
                                     promotion_body(deployment_diff, source))
    print(f"propose: {action} pull request #{pull['number']} {pull['html_url']}")
    return {"branch": branch, "commit": commit, "action": action, "pull": pull,
            "image": image, "files": changed}
