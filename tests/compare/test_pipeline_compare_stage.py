"""The compare stage inside the real DVC pipeline, as `make run` runs it on a fresh copy."""

from __future__ import annotations

import sys

from pipelines.core.decision import Decision
from tests.compare.conftest import sh


def test_dvc_repro_ends_with_a_verdict_against_the_bundled_production_model(smoke_repo):
    # smoke_repo (tests/conftest.py) is that copy: data and the production weights the pointer
    # names pulled (`make data`, `make production`), the smoke profile, `dvc repro` run through
    # compare, its last stage.
    root = smoke_repo
    verdict = sh([sys.executable, "-m", "pipelines", "verdict", "reports/compare"], root).stdout
    decision = Decision.load(root / "reports/compare/decision.json")
    production = (root / "models/production.yaml").read_text()
    assert decision.production_version in production
    assert decision.bootstrap is False
    assert verdict.startswith(f"verdict: {decision.verdict.upper()} for "
                              f"{decision.candidate_version} vs production "
                              f"{decision.production_version}")
    for name in ("pr_body.md", "quality.html", "drift.html"):
        assert f"reports/compare/{name}" in verdict
        assert (root / "reports/compare" / name).stat().st_size > 0
    body = (root / "reports/compare/pr_body.md").read_text()
    assert "| macro-F1 |" in body and "### Training-data drift" in body
