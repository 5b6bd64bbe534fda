"""Security and thin-workflow rules every GitHub workflow of the template must satisfy.

Each rule takes a parsed workflow and returns findings ("file: job/step: what is wrong"); the
tests apply every rule to every workflow and prove each rule catches a violating workflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

# Events whose runs can only be started by people with write access (or by the repository itself).
TRUSTED_EVENTS = {"push", "workflow_dispatch", "schedule", "release", "merge_group"}
# Events that run with a base-repository token even for a fork's code.
PRIVILEGED_FORK_EVENTS = {"pull_request_target", "workflow_run"}
CLOUD_CREDENTIAL_ACTIONS = {
    "aws-actions/configure-aws-credentials": {"aws-access-key-id", "aws-secret-access-key"},
    "google-github-actions/auth": {"credentials_json"},
    "azure/login": {"creds"},
}
_PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
_DOCKER_PINNED = re.compile(r"^docker://\S+@sha256:[0-9a-f]{64}$")
_ENTRY_POINT = re.compile(r"^(make( [\w.-]+)+|python -m pipelines( [\w-]+)+|\.ci/run)$")
_UNTRUSTED_REF = re.compile(
    r"github\.(head_ref|event\.pull_request\.head|event\.workflow_run\.head)")

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


def top_level_permissions_empty(workflow: Workflow) -> list[Finding]:
    if workflow.get("permissions") != {}:
        return ["permissions: the workflow must start from `permissions: {}` "
                "(each job then asks for what it needs)"]
    return []


def jobs_declare_least_privilege(workflow: Workflow) -> list[Finding]:
    """Each job lists its permissions; nothing is writable on events a fork can start."""
    findings = []
    untrusted = events(workflow) - TRUSTED_EVENTS
    for job_id, job in _jobs(workflow):
        perms = job.get("permissions")
        if not isinstance(perms, dict):
            findings.append(f"jobs.{job_id}: no `permissions:` mapping (write-all by default)")
            continue
        writes = sorted(k for k, v in perms.items() if v == "write")
        if untrusted and writes:
            findings.append(f"jobs.{job_id}: {writes} writable on {sorted(untrusted)}, "
                            "which forks can trigger")
        uses_cloud = any(_action(s) in CLOUD_CREDENTIAL_ACTIONS for s in job.get("steps") or [])
        if perms.get("id-token") == "write" and not uses_cloud:
            findings.append(f"jobs.{job_id}: id-token: write without a cloud credential step")
    return findings


def actions_pinned_to_commits(workflow: Workflow) -> list[Finding]:
    findings = []
    for job_id, index, step in _steps(workflow):
        ref = step.get("uses")
        if ref is None or ref.startswith("./"):
            continue
        if not (_PINNED.match(ref) or _DOCKER_PINNED.match(ref)):
            findings.append(f"{_where(job_id, index, step)}: `{ref}` is not pinned to a full "
                            "40-character commit SHA (or a docker image digest)")
    return findings


def concurrency_per_ref(workflow: Workflow) -> list[Finding]:
    """A concurrency group exists; on push it is keyed by the ref: a branch cannot race itself."""
    group = (workflow.get("concurrency") or {}).get("group")
    if not group:
        return ["concurrency: no group (two runs could race on the same branch)"]
    if "push" in events(workflow) and "github.ref" not in group and "${{" in group:
        return [f"concurrency.group `{group}` is not keyed by github.ref"]
    return []


def no_untrusted_checkout(workflow: Workflow) -> list[Finding]:
    """pull_request_target / workflow_run must not check out the fork's code with a base token."""
    if not events(workflow) & PRIVILEGED_FORK_EVENTS:
        return []
    findings = []
    for job_id, index, step in _steps(workflow):
        ref = str((step.get("with") or {}).get("ref", ""))
        if _action(step) == "actions/checkout" and _UNTRUSTED_REF.search(ref):
            findings.append(f"{_where(job_id, index, step)}: checks out untrusted code ({ref}) "
                            f"on {sorted(events(workflow) & PRIVILEGED_FORK_EVENTS)}")
    return findings


def secrets_only_on_trusted_events(workflow: Workflow) -> list[Finding]:
    untrusted = events(workflow) - TRUSTED_EVENTS
    text = yaml.safe_dump(workflow)
    if untrusted and "secrets." in text:
        return [f"on: {sorted(untrusted)} can be started by a fork, but the workflow reads secrets"]
    return []


def no_expressions_in_scripts(workflow: Workflow) -> list[Finding]:
    """Event data reaches scripts through env, never pasted into the shell (script injection)."""
    return [f"{_where(j, i, s)}: `${{{{ }}}}` inside run:; pass the value through env:"
            for j, i, s in _steps(workflow) if "${{" in str(s.get("run", ""))]


def checkouts_drop_credentials(workflow: Workflow) -> list[Finding]:
    return [f"{_where(j, i, s)}: checkout without `persist-credentials: false`"
            for j, i, s in _steps(workflow)
            if _action(s) == "actions/checkout"
            and (s.get("with") or {}).get("persist-credentials") is not False]


def cloud_credentials_through_oidc(workflow: Workflow) -> list[Finding]:
    findings = []
    for job_id, index, step in _steps(workflow):
        static = CLOUD_CREDENTIAL_ACTIONS.get(_action(step), set()) & set(step.get("with") or {})
        if static:
            findings.append(f"{_where(job_id, index, step)}: static cloud keys {sorted(static)}; "
                            "use OIDC (role-to-assume / workload identity)")
        perms = workflow["jobs"][job_id].get("permissions") or {}
        if _action(step) in CLOUD_CREDENTIAL_ACTIONS and perms.get("id-token") != "write":
            findings.append(f"{_where(job_id, index, step)}: OIDC needs `id-token: write`")
    return findings


def jobs_have_timeouts(workflow: Workflow) -> list[Finding]:
    return [f"jobs.{job_id}: no timeout-minutes (a hung run would hold the runner for 6 hours)"
            for job_id, job in _jobs(workflow) if "timeout-minutes" not in job]


def scripts_are_entry_points(workflow: Workflow) -> list[Finding]:
    """Every run: is one make target, one `python -m pipelines` command, or .ci/run."""
    return [f"{_where(j, i, s)}: `{s['run']}` is not a make target or pipelines command"
            for j, i, s in _steps(workflow)
            if "run" in s and not _ENTRY_POINT.match(str(s["run"]).strip())]


RULES: tuple[Callable[[Workflow], list[Finding]], ...] = (
    top_level_permissions_empty, jobs_declare_least_privilege, actions_pinned_to_commits,
    concurrency_per_ref, no_untrusted_checkout, secrets_only_on_trusted_events,
    no_expressions_in_scripts, checkouts_drop_credentials, cloud_credentials_through_oidc,
    jobs_have_timeouts, scripts_are_entry_points,
)


def check_workflow(path: Path) -> list[Finding]:
    """Every rule's findings for one workflow file, each prefixed with the file name."""
    workflow = load_workflow(path)
    return [f"{path}: {finding}" for rule in RULES for finding in rule(workflow)]


def run_commands(workflow: Workflow) -> list[str]:
    """The `run:` commands of a workflow, in order."""
    return [str(s["run"]).strip() for _, _, s in _steps(workflow) if "run" in s]
