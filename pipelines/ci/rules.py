"""The workflow lint: zizmor's security audits plus the rules of this project that zizmor lacks.

zizmor (pinned in requirements.lock) runs offline at the `pedantic` persona; docs/workflows.md
maps each of its audits to what it guards here. The project rules below each take a parsed
workflow and return findings ("jobs.<id>...: what is wrong"); the tests apply every rule to every
workflow and prove each rule catches a violating workflow.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from pipelines.core.tools import run
from pipelines.runtime.errors import PipelineError

# pedantic: also flags a missing top-level `permissions:`, a workflow without `concurrency`, any
# `${{ }}` in a `run:` (not only attacker-controlled ones) and write permissions without a
# reason; auditor adds findings its own docs call false positives (secrets outside environments).
ZIZMOR_PERSONA = "pedantic"
# Events whose runs can only be started by people with write access (or by the repository itself).
TRUSTED_EVENTS = {"push", "workflow_dispatch", "schedule", "release", "merge_group"}
CLOUD_CREDENTIAL_ACTIONS = {
    "aws-actions/configure-aws-credentials": {"aws-access-key-id", "aws-secret-access-key"},
    "google-github-actions/auth": {"credentials_json"},
    "azure/login": {"creds"},
}
_ENTRY_POINT = re.compile(r"^(make( [\w.-]+)+|python -m pipelines( [\w-]+)+|\.ci/run)$")

Workflow = dict[str, Any]
Finding = str


def load_workflow(path: Path) -> Workflow:
    """Parse a workflow file; YAML 1.1 reads a bare `on:` key as True, so restore its name."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if True in data:
        data["on"] = data.pop(True)
    return data


def events(workflow: Workflow) -> set[str]:
    on = workflow.get("on", {})
    if isinstance(on, str):
        return {on}
    return set(on)


def _jobs(workflow: Workflow) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from (workflow.get("jobs") or {}).items()


def _steps(workflow: Workflow) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for job_id, job in _jobs(workflow):
        for index, step in enumerate(job.get("steps") or []):
            yield job_id, index, step


def _where(job_id: str, index: int, step: dict[str, Any]) -> str:
    return f"jobs.{job_id}.steps[{index}] ({step.get('name', step.get('uses', 'run'))})"


def _action(step: dict[str, Any]) -> str:
    return str(step.get("uses", "")).split("@", 1)[0]


def no_writes_on_fork_events(workflow: Workflow) -> list[Finding]:
    """Project-specific: `ci` runs every PR, a fork's included; zizmor has no notion of that."""
    untrusted = events(workflow) - TRUSTED_EVENTS
    if not untrusted:
        return []
    return [f"jobs.{job_id}: {writes} writable on {sorted(untrusted)}, which forks can trigger"
            for job_id, job in _jobs(workflow)
            if (writes := sorted(k for k, v in (job.get("permissions") or {}).items()
                                 if v == "write"))]


def secrets_only_on_trusted_events(workflow: Workflow) -> list[Finding]:
    """Project-specific: the fork-facing workflow needs no secret (zizmor's secret audits look
    at how secrets are passed, not at which events may read them)."""
    untrusted = events(workflow) - TRUSTED_EVENTS
    if untrusted and "secrets." in yaml.safe_dump(workflow):
        return [f"on: {sorted(untrusted)} can be started by a fork, but the workflow reads secrets"]
    return []


def push_concurrency_keyed_by_ref(workflow: Workflow) -> list[Finding]:
    """Project-specific: zizmor asks for a group; retrain needs it per branch (one run per
    branch, a newer push cancels the older; two branches never cancel each other)."""
    group = str((workflow.get("concurrency") or {}).get("group", ""))
    if "push" in events(workflow) and "${{" in group and "github.ref" not in group:
        return [f"concurrency.group `{group}` is not keyed by github.ref"]
    return []


def cloud_credentials_through_oidc(workflow: Workflow) -> list[Finding]:
    """Project-specific (zizmor has no cloud audit): OIDC only, and `id-token: write` only
    where a cloud credential step uses it."""
    findings = []
    for job_id, index, step in _steps(workflow):
        static = CLOUD_CREDENTIAL_ACTIONS.get(_action(step), set()) & set(step.get("with") or {})
        if static:
            findings.append(f"{_where(job_id, index, step)}: static cloud keys {sorted(static)}; "
                            "use OIDC (role-to-assume / workload identity)")
        perms = workflow["jobs"][job_id].get("permissions") or {}
        if _action(step) in CLOUD_CREDENTIAL_ACTIONS and perms.get("id-token") != "write":
            findings.append(f"{_where(job_id, index, step)}: OIDC needs `id-token: write`")
    for job_id, job in _jobs(workflow):
        uses_cloud = any(_action(s) in CLOUD_CREDENTIAL_ACTIONS for s in job.get("steps") or [])
        if (job.get("permissions") or {}).get("id-token") == "write" and not uses_cloud:
            findings.append(f"jobs.{job_id}: id-token: write without a cloud credential step")
    return findings


def jobs_have_timeouts(workflow: Workflow) -> list[Finding]:
    """Project-specific (no zizmor audit): a hung training must not hold a runner for 6 hours."""
    return [f"jobs.{job_id}: no timeout-minutes (a hung run would hold the runner for 6 hours)"
            for job_id, job in _jobs(workflow) if "timeout-minutes" not in job]


def scripts_are_entry_points(workflow: Workflow) -> list[Finding]:
    """Project-specific: every run: is one make target, one `python -m pipelines` command, or
    .ci/run, so the test suite runs each step the workflows run."""
    return [f"{_where(j, i, s)}: `{s['run']}` is not a make target or pipelines command"
            for j, i, s in _steps(workflow)
            if "run" in s and not _ENTRY_POINT.match(str(s["run"]).strip())]


RULES: tuple[Callable[[Workflow], list[Finding]], ...] = (
    no_writes_on_fork_events, secrets_only_on_trusted_events, push_concurrency_keyed_by_ref,
    cloud_credentials_through_oidc, jobs_have_timeouts, scripts_are_entry_points,
)


def check_workflow(path: Path) -> list[Finding]:
    """Every project rule's findings for one workflow file, each prefixed with the file name."""
    workflow = load_workflow(path)
    return [f"{path}: {finding}" for rule in RULES for finding in rule(workflow)]


def _route(location: dict[str, Any]) -> str:
    parts = [f"[{p['Index']}]" if "Index" in p else f".{p['Key']}"
             for p in location["symbolic"]["route"]["route"]]
    return "".join(parts).lstrip(".")


def zizmor_findings(paths: Sequence[Path]) -> list[Finding]:
    """zizmor's findings for these workflow files, offline (no GitHub API), one line each:
    "file:line: zizmor <audit> (<severity>): what, where; its documentation"."""
    if not paths:
        return []
    # The zizmor installed beside this interpreter: the venv's, at the version of the lock.
    binary = Path(sys.executable).parent / "zizmor"
    if not binary.exists():
        raise PipelineError(f"workflow lint: no zizmor at {binary}: run it with the project's "
                            "venv (`make venv` installs the version requirements.lock pins)")
    # --no-exit-codes: findings exit 0 and come back as JSON; a non-zero exit is zizmor failing.
    # --strict-collection: a file zizmor cannot parse fails the lint instead of being skipped.
    out = run([binary, "--offline", f"--persona={ZIZMOR_PERSONA}", "--format=json",
               "--no-exit-codes", "--strict-collection", "--no-progress", "--color=never",
               *paths], "workflow lint (zizmor)", timeout=120)
    findings = []
    for finding in json.loads(out):
        primary = next((loc for loc in finding["locations"]
                        if loc["symbolic"]["kind"] == "Primary"), finding["locations"][0])
        path = primary["symbolic"]["key"]["Local"]["verbatim_path"]
        line = primary["concrete"]["location"]["start_point"]["row"] + 1
        findings.append(
            f"{path}:{line}: zizmor {finding['ident']} "
            f"({finding['determinations']['severity'].lower()}): {finding['desc']}, "
            f"{_route(primary)}: {primary['symbolic']['annotation']}; see {finding['url']}")
    return findings


def run_commands(workflow: Workflow) -> list[str]:
    """The `run:` commands of a workflow, in order."""
    return [str(s["run"]).strip() for _, _, s in _steps(workflow) if "run" in s]
