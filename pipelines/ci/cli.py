"""Commands about the GitHub workflows: generate them, show retrain's triggers, check them, and
check a fork's configuration (doctor)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipelines.ci.doctor import diagnose, format_checks
from pipelines.ci.rules import ZIZMOR_PERSONA, check_workflow, zizmor_findings
from pipelines.ci.triggers import classify_dep, dvc_pointers, resolve_stages, retrain_trigger_paths
from pipelines.ci.workflows import WORKFLOW_DIR, all_workflows, out_of_sync, write_workflows
from pipelines.core.cli import new_app
from pipelines.runtime.errors import PipelineError

workflows_app = new_app("The GitHub workflows, generated from pipelines/ci/workflows.py.")


@workflows_app.command("generate")
def workflows_generate(root: Path = Path(".")) -> None:
    """Rewrite .github/workflows/*.yml (retrain's trigger paths come from dvc.yaml)."""
    written = write_workflows(root)
    print("workflows: wrote " + ", ".join(str(p) for p in written))


@workflows_app.command("triggers")
def workflows_triggers(root: Path = Path(".")) -> None:
    """Print retrain's trigger paths, and why each declared dep that is not one is left out."""
    stages = resolve_stages(root)
    paths = retrain_trigger_paths(root)
    print("retrain triggers on:\n" + "\n".join(f"  {p}" for p in paths))
    outputs, pointers = {out for stage in stages for out in stage.outs}, dvc_pointers(root)
    reasons = {"internal": "produced by a stage", "promotion": "written by a promotion"}
    left_out = {}
    for dep in {dep for stage in stages for dep in stage.deps}:
        kind, _ = classify_dep(dep, outputs, pointers)
        if kind in reasons:
            left_out[dep] = reasons[kind]
    print("declared but not triggers:\n" + "\n".join(
        f"  {dep} ({why})" for dep, why in sorted(left_out.items())))


@workflows_app.command("check")
def workflows_check(root: Path = Path(".")) -> None:
    """Fail when a workflow differs from the generator, has a zizmor finding or breaks a
    project rule."""
    problems = out_of_sync(root)
    paths = [p for name in all_workflows(root) if (p := root / WORKFLOW_DIR / name).exists()]
    for path in paths:
        problems.extend(check_workflow(path))
    problems.extend(zizmor_findings(paths))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        raise PipelineError(f"{len(problems)} workflow problem(s)")
    print(f"workflows: {len(all_workflows(root))} files in sync, no zizmor finding "
          f"({ZIZMOR_PERSONA}), within the project rules")


def doctor(root: Path = Path("."),
           offline: Annotated[bool, typer.Option(
               help="Do not contact the DVC remote.")] = False) -> None:
    """Check a fork's configuration (DVC remote, image pins, Argo CD app, settings, workflows)."""
    checks = diagnose(root, reach=not offline)
    print(format_checks(checks))
    missing = [c for c in checks if c.status == "missing"]
    if missing:
        raise PipelineError(f"{len(missing)} setting(s) missing: fix the MISSING lines above "
                            "(docs/workflows.md, 'Use this template')")
    print("doctor: the loop is configured" + (" (see the warnings)" if any(
        c.status == "warn" for c in checks) else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(workflows_app, name="workflows")
    app.command()(doctor)
