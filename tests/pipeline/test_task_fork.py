"""A team forks the template for a task of its own (TweetEval hate, docs/tasks.md) and the
pipeline judges its first candidate by that task's behavioural checks only."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.ci.doctor import check_behaviour_task
from tests.conftest import SMOKE_PROFILE, pipelines_cli, run

HATE_SAMPLE = "tests/data/tweeteval-hate"
FOREIGN = "directional_insult"  # the offensive task's check: an insult alone is not hate


def hate_declaration(repo: Path) -> dict:
    """The yaml block the fork guide shows for the hate task."""
    text = (repo / "docs/tasks.md").read_text(encoding="utf-8")
    after = text.split("<!-- hate-task-declaration", 1)[1]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", after, re.DOTALL).group(1))


def declare_task(repo: Path, task: dict) -> None:
    """What the guide tells a team: labels set, both behaviour sections replaced whole."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params["data"]["labels"] = task["data"]["labels"]
    params["evaluate"]["behaviour"] = task["evaluate"]["behaviour"]
    params["gate"]["floors"]["behaviour"] = task["gate"]["floors"]["behaviour"]
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def set_labels(repo: Path, labels: list[str]) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params["data"]["labels"] = labels
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def declared_fork(base_repo, tmp_path_factory) -> Path:
    """A copy forked for TweetEval hate: its data imported, labels set, the task declared; what
    doctor said before and after the declaration is in doctor.json."""
    repo = Path(shutil.copytree(base_repo, tmp_path_factory.mktemp("hate") / "repo",
                                symlinks=True))
    pipelines_cli(["data", "import-tweeteval", HATE_SAMPLE, "--out", "data"], repo)
    (repo / "models/production.yaml").write_text("version: null\n", encoding="utf-8")
    set_labels(repo, ["not-hate", "hate"])
    # Labels changed, checks still the offensive task's: doctor points at the declaration.
    before = check_behaviour_task(repo)
    declare_task(repo, hate_declaration(repo))
    after = check_behaviour_task(repo)
    (repo / "doctor.json").write_text(json.dumps({"before": before.__dict__,
                                                  "after": after.__dict__}))
    return repo


@pytest.fixture(scope="module")
def hate_fork(declared_fork) -> Path:
    """The declared fork on the smoke profile, the whole DVC pipeline run."""
    repo = declared_fork
    run([sys.executable, "-m", "pipelines", "profile", SMOKE_PROFILE], repo)
    run(["dvc", "add", "data"], repo)
    run(["dvc", "repro"], repo)
    return repo


def test_doctor_warns_until_the_fork_declares_its_tasks_checks(declared_fork):
    doctor = json.loads((declared_fork / "doctor.json").read_text())
    assert doctor["before"]["status"] == "warn"
    assert "written for ['not-offensive', 'offensive']" in doctor["before"]["detail"]
    assert "docs/tasks.md" in doctor["before"]["detail"]
    assert doctor["after"]["status"] == "ok"
    assert "target_swap" in doctor["after"]["detail"]


def test_the_hate_fork_reaches_a_verdict_no_foreign_check_decides(hate_fork):
    decision = json.loads((hate_fork / "reports/compare/decision.json").read_text())
    assert decision["verdict"] in {"promote", "reject"} and decision["bootstrap"]
    checks = [r["check"] for r in decision["reasons"]]
    assert not [c for c in checks if FOREIGN in c]
    declared = set(hate_declaration(hate_fork)["gate"]["floors"]["behaviour"])
    behaviour = [c.removeprefix("floor.behaviour.") for c in checks
                 if c.startswith("floor.behaviour.")]
    assert behaviour and all(name == d or name.startswith(d + "_")
                             for name in behaviour for d in [_owner(name, declared)])
    # The hate task's own checks ran and gate: the template test always gives a result.
    assert "floor.behaviour.neutral_mention" in checks
    assert "floor.behaviour.invariance_add_mention" in checks
    for model in ("candidate", "baseline"):
        metrics = json.loads((hate_fork / f"reports/metrics/{model}.json").read_text())
        assert set(metrics["per_class"]) == {"not-hate", "hate"}
        assert not [name for name in metrics["behaviour"] if FOREIGN in name]
        assert "neutral_mention" in metrics["behaviour"]
    pr_body = (hate_fork / "reports/compare/pr_body.md").read_text()
    assert FOREIGN not in pr_body


def _owner(result: str, declared: set[str]) -> str:
    owners = [d for d in declared if result == d or result.startswith(d + "_")]
    assert len(owners) == 1, f"{result} belongs to no declared check of {declared}"
    return owners[0]
