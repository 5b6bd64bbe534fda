"""The loop on a laptop: a data change pushed on a branch, the retrain workflow's steps in its
order, and what they leave on a local bare `origin` and a local GitHub API (tests/github_server).

The steps are the commands of .github/workflows/retrain.yml, each run in a fresh clone of
`origin` as a fresh runner would (the evaluate job's reports, dvc.lock and .dvc/storage reach the
propose job as the retrain-reports artifact does), with CI=true as on Actions. What differs:
- `make venv` is not run: the shared virtualenv stands in for it (`make -o venv ...`);
- `retrain image` cannot build here (no Docker engine): the test asserts its clear failure, with
  DOCKER_HOST pointed at a socket that does not exist so that the result is the same on machines
  that have Docker, then goes on as if the image had been pushed;
- the repository is on the smoke profile plus tests/e2e/gitops_profile.yaml (floors a tiny random
  model can meet, a 4-second load test: the real Locust gate against the real Bento).

The scenario, so that each verdict asserted is what the gate decides:
1. main has no production model yet (`models/production.yaml`: `version: null`), as a new fork.
2. Branch data/more-rows adds rows (a new data.dvc). Its candidate, trained on the true labels, is
   better than chance on every floor: PROMOTE, one branch promote/data/more-rows and one pull
   request; rerunning the propose job updates that pull request.
3. The promotion is merged into main. The same data and params retrain to the same version, so
   proposing again on main stops: production already runs it (no loop after a merge).
4. Branch data/poisoned flips every label. Its candidate (worse than chance) is judged against
   the promoted model: REJECT, `make compare` exits 1 while every report and the job summary are
   still written, and no promotion branch or pull request appears.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import SMOKE_PROFILE, run
from tests.github_server import FakeGitHub

PROFILE = Path(__file__).with_name("gitops_profile.yaml")
MAKE = ["make", "--no-print-directory", "-o", "venv"]
PY = [sys.executable, "-m", "pipelines"]
ARTIFACT = ("reports", "dvc.lock", ".dvc/storage")  # what retrain.yml uploads, then downloads
NO_DOCKER = "unix:///nonexistent/docker.sock"


def flip_labels(frame: pd.DataFrame) -> pd.DataFrame:
    labels = {"offensive": "not-offensive", "not-offensive": "offensive"}
    return frame.assign(label=frame.label.map(labels))


def more_rows(frame: pd.DataFrame) -> pd.DataFrame:
    new = pd.DataFrame({"id": [f"e2e-{i}" for i in range(20)],
                        "text": [f"thanks for the update number {i} @user" for i in range(20)],
                        "label": "not-offensive", "source": "feedback"})
    return pd.concat([frame, new], ignore_index=True)


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], repo).stdout.strip()


@dataclass
class Loop:
    """The places of one scenario: the developer's clone, the bare origin, the GitHub API."""

    tmp: Path
    work: Path
    origin: Path
    github: FakeGitHub

    def env(self, clone: Path, **extra: str) -> dict[str, str]:
        return {"CI": "true", "GITHUB_API_URL": self.github.url,
                "GITHUB_REPOSITORY": self.github.repo, "GITHUB_TOKEN": self.github.token,
                "BENTOML_HOME": str(clone / ".bentoml"), **extra}

    def runner(self, branch: str, name: str) -> Path:
        """A fresh clone of origin at branch, as actions/checkout gives a job."""
        clone = self.tmp / name
        run(["git", "clone", "--quiet", "--branch", branch, str(self.origin), str(clone)],
            self.tmp)
        return clone

    def commit_data_version(self, branch: str, change) -> None:
        """What a user does: change the data on a branch, dvc add + push, commit, git push."""
        git(self.work, "checkout", "--quiet", "-B", branch, "main")
        train = self.work / "data/train.csv"
        change(pd.read_csv(train, dtype=str, keep_default_na=False)).to_csv(train, index=False)
        run(["dvc", "add", "--quiet", "data"], self.work)
        run(["dvc", "push", "--quiet", "data.dvc"], self.work)  # the in-repo remote, in git
        git(self.work, "add", "data.dvc", ".dvc/storage")
        git(self.work, "commit", "--quiet", "-m", f"data: {branch}")
        git(self.work, "push", "--quiet", "origin", branch)

    def evaluate_job(self, branch: str, name: str) -> tuple[Path, dict, Path]:
        """retrain.yml's evaluate job: gated steps until one fails, then summary and upload."""
        clone = self.runner(branch, name)
        env = self.env(clone)
        results = {}
        for step in (MAKE + ["data"], MAKE + ["repro"], MAKE + ["compare"], MAKE + ["loadtest"],
                     PY + ["retrain", "push-outputs"]):
            label = step[-1] if step[0] == "make" else " ".join(step[-2:])
            results[label] = result = run(step, clone, check=False, timeout=300, **env)
            if result.returncode != 0:
                break
        summary = self.tmp / f"{name}-summary.md"
        run(PY + ["retrain", "summary", "--out", str(summary)], clone, **env)
        artifact = self.tmp / f"{name}-artifact"
        for rel in ARTIFACT:
            source = clone / rel
            if source.is_dir():
                shutil.copytree(source, artifact / rel)
            elif source.exists():
                shutil.copy2(source, artifact / rel)
        return clone, results, summary

    def propose_job(self, branch: str, artifact: Path, name: str) -> tuple[Path, dict]:
        """retrain.yml's propose job, from the evaluate job's artifact."""
        clone = self.runner(branch, name)
        shutil.copytree(artifact, clone, dirs_exist_ok=True)  # actions/download-artifact
        env = self.env(clone, SOURCE_BRANCH=branch, DOCKER_HOST=NO_DOCKER)
        results = {"restore": run(PY + ["retrain", "restore"], clone, **env),
                   "bento": run(MAKE + ["bento"], clone, **env),
                   "image": run(PY + ["retrain", "image"], clone, check=False, **env),
                   "propose": run(PY + ["retrain", "propose"], clone, **env)}
        return clone, results

    def branches(self) -> set[str]:
        return set(git(self.origin, "for-each-ref", "--format=%(refname:lstrip=2)",
                       "refs/heads/").split())


def start_without_production(work: Path) -> None:
    """`version: null`: no production model yet, the first candidate is judged on the floors."""
    from pipelines.core.production import HEADER

    (work / "models/production.yaml").write_text(HEADER + "version: null\n")
    git(work, "rm", "--quiet", "models/production.dvc")
    shutil.rmtree(work / "models/production")


@pytest.fixture(scope="module")
def loop(base_repo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gitops")
    work = Path(shutil.copytree(base_repo, tmp / "work", symlinks=True))
    git(work, "branch", "-M", "main")
    for profile in (SMOKE_PROFILE, str(PROFILE)):
        run(PY + ["profile", profile], work)
    start_without_production(work)
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "smoke profile; no production model yet")
    origin = tmp / "origin.git"
    run(["git", "init", "--quiet", "--bare", str(origin)], tmp)
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "--quiet", "origin", "main")
    with FakeGitHub(git_dir=origin) as github:
        yield Loop(tmp, work, origin, github)


@pytest.fixture(scope="module")
def promoted(loop):
    """Steps 2 and 3 of the scenario; what each job printed and left behind."""
    loop.commit_data_version("data/more-rows", more_rows)
    evaluated, evaluate, summary = loop.evaluate_job("data/more-rows", "evaluate-more-rows")
    artifact = loop.tmp / "evaluate-more-rows-artifact"
    proposer, propose = loop.propose_job("data/more-rows", artifact, "propose-more-rows")
    first_pr = [dict(p) for p in loop.github.pulls()]
    first_commit = git(loop.origin, "rev-parse", "promote/data/more-rows")
    rerun = run(PY + ["retrain", "propose"], proposer,
                **loop.env(proposer, SOURCE_BRANCH="data/more-rows"))
    return {"evaluated": evaluated, "evaluate": evaluate, "summary": summary,
            "artifact": artifact, "proposer": proposer, "propose": propose,
            "first_pr": first_pr, "first_commit": first_commit, "rerun": rerun}


def test_a_new_data_version_passes_every_gate_of_the_evaluate_job(promoted):
    steps = promoted["evaluate"]
    assert list(steps) == ["data", "repro", "compare", "loadtest", "retrain push-outputs"]
    assert all(r.returncode == 0 for r in steps.values()), {k: r.stderr[-2000:]
                                                           for k, r in steps.items()}
    decision = json.loads((promoted["evaluated"] / "reports/compare/decision.json").read_text())
    assert decision["verdict"] == "promote", decision["reasons"]
    assert "verdict: PROMOTE" in steps["compare"].stdout
    loadtest = json.loads((promoted["evaluated"] / "reports/loadtest/summary.json").read_text())
    assert loadtest["verdict"]["passed"] and loadtest["model_version"] == \
        decision["candidate_version"]
    assert decision["bootstrap"] is True
    for report in ("compare/pr_body.md", "compare/confusion_candidate.png",
                   "loadtest/summary.md", "loadtest/locust.html", "metrics/candidate.json"):
        assert (promoted["artifact"] / "reports" / report).stat().st_size > 0, report
    summary = promoted["summary"].read_text()
    assert "## Model comparison" in summary and "PASSED" in summary


def test_the_propose_job_restores_the_evaluated_model_without_retraining(promoted):
    steps = promoted["propose"]
    assert "restored transformer-" in steps["restore"].stdout
    assert "Running stage" not in steps["bento"].stdout + steps["bento"].stderr
    assert "bento: built moderation:" in steps["bento"].stdout


def test_the_image_step_fails_clearly_without_a_docker_engine(promoted):
    image = promoted["propose"]["image"]
    assert image.returncode == 1
    assert "error: no Docker engine reachable" in image.stderr
    assert "bentoml containerize` needs Docker" in image.stderr


def test_the_promotion_branch_holds_exactly_the_image_pin_and_the_model_pointer(loop, promoted):
    assert loop.branches() == {"main", "data/more-rows", "promote/data/more-rows"}
    diff = git(loop.origin, "diff", "--name-only", "data/more-rows", "promote/data/more-rows")
    files = diff.splitlines()
    pointer = ["k8s/overlays/production/kustomization.yaml", "models/production.dvc",
               "models/production.yaml"]
    assert sorted(f for f in files if not f.startswith(".dvc/storage/")) == pointer
    storage = [f for f in files if f.startswith(".dvc/storage/files/md5/")]
    assert len(storage) == 1 + len(list((promoted["evaluated"] / "models/candidate").iterdir()))
    decision = json.loads((promoted["evaluated"] / "reports/compare/decision.json").read_text())
    version = decision["candidate_version"]
    source = git(loop.origin, "rev-parse", "--short=8", "data/more-rows")
    tag = f"{version}-{source}"
    overlay = git(loop.origin, "diff", "-U0", "data/more-rows", "promote/data/more-rows", "--",
                  pointer[0])
    changed = [line for line in overlay.splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["-    newTag: transformer-4d4a25b1-0219b906", f"+    newTag: {tag}"]
    record = yaml.safe_load(git(loop.origin, "show", f"promote/data/more-rows:{pointer[2]}"))
    assert record["version"] == version
    assert record["image"] == f"ghcr.io/example-org/moderation-service:{tag}"
    assert record["bento_tag"] == f"moderation:{tag}"


def test_one_pull_request_with_the_reports_as_body_and_a_rerun_updates_it(loop, promoted):
    first = promoted["first_pr"]
    assert len(first) == 1
    pull = first[0]
    assert pull["head"]["ref"] == "promote/data/more-rows" and pull["base"]["ref"] == "main"
    body = pull["body"]
    pr_body = (promoted["artifact"] / "reports/compare/pr_body.md").read_text().strip()
    loadtest = (promoted["artifact"] / "reports/loadtest/summary.md").read_text().strip()
    assert body.startswith(pr_body) and loadtest in body
    assert "### Deployment: `production`" in body and "```diff" in body
    assert "created pull request #1" in promoted["propose"]["propose"].stdout
    assert "updated pull request #1" in promoted["rerun"].stdout
    assert [p["number"] for p in loop.github.pulls("all")] == [1]
    rerun_commit = git(loop.origin, "rev-parse", "promote/data/more-rows")
    assert git(loop.origin, "diff", "--stat", promoted["first_commit"], rerun_commit) == ""


@pytest.fixture(scope="module")
def merged(loop, promoted):
    """Step 3: the promotion pull request is merged into main, then main's propose job runs.

    The merge brings data.dvc to main, so retrain runs there and trains the same version (same
    data, same params); its evaluation is the one already made, so the artifact stands in for it.
    """
    git(loop.work, "fetch", "--quiet", "origin")
    git(loop.work, "checkout", "--quiet", "main")
    git(loop.work, "merge", "--quiet", "--ff-only", "origin/promote/data/more-rows")
    git(loop.work, "push", "--quiet", "origin", "main")
    clone = loop.runner("main", "propose-main")
    shutil.copytree(promoted["artifact"], clone, dirs_exist_ok=True)
    return run(PY + ["retrain", "propose"], clone, **loop.env(clone, SOURCE_BRANCH="main"))


def test_merging_the_promotion_does_not_propose_it_again(loop, merged):
    assert "nothing to propose: production already runs transformer-" in merged.stdout
    assert "promote/main" not in loop.branches()
    assert len(loop.github.pulls("all")) == 1


def test_a_poisoned_data_version_is_rejected_and_proposes_nothing(loop, merged):
    loop.commit_data_version("data/poisoned", flip_labels)
    clone, steps, summary = loop.evaluate_job("data/poisoned", "evaluate-poisoned")
    assert list(steps) == ["data", "repro", "compare"]
    assert steps["repro"].returncode == 0  # a reject is the stage's result, not its failure
    assert steps["compare"].returncode != 0  # make's own code (2) for a recipe exiting 1
    assert "candidate rejected by the gate" in steps["compare"].stderr
    decision = json.loads((clone / "reports/compare/decision.json").read_text())
    assert decision["verdict"] == "reject"
    assert decision["production_version"] == promoted_version(loop)
    assert "non_inferiority.macro_f1" in decision["failed"]
    for report in ("pr_body.md", "quality.html", "drift.html", "confusion_production.png"):
        assert (clone / "reports/compare" / report).stat().st_size > 0, report
    assert "REJECT" in summary.read_text()
    assert "reports/loadtest/summary.md` was not produced" in summary.read_text()
    # The propose job needs the evaluate job; even run by hand it proposes nothing.
    result = run(PY + ["retrain", "propose"], clone,
                 **loop.env(clone, SOURCE_BRANCH="data/poisoned"))
    assert "nothing to propose: the gate rejected" in result.stdout
    assert "promote/data/poisoned" not in loop.branches()
    assert len(loop.github.pulls("all")) == 1


def promoted_version(loop: Loop) -> str:
    return yaml.safe_load(git(loop.origin, "show", "main:models/production.yaml"))["version"]
