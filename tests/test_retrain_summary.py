"""The retrain job summary: the reports that exist, and a line for each one that is missing."""

from __future__ import annotations

from typer.testing import CliRunner

from pipelines.cli import app


def test_summary_appends_existing_reports_and_names_the_missing_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports/compare").mkdir(parents=True)
    (tmp_path / "reports/compare/pr_body.md").write_text("## Verdict: reject\n\nmacro-F1 fell\n")
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step output\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = CliRunner().invoke(app, ["retrain", "summary"])
    assert result.exit_code == 0, result.output
    text = summary.read_text()
    assert text.startswith("earlier step output\n# Retrain\n")
    assert "## Verdict: reject\n\nmacro-F1 fell" in text
    assert "`reports/loadtest/summary.md` was not produced" in text


def test_summary_prints_when_not_running_in_actions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    result = CliRunner().invoke(app, ["retrain", "summary"])
    assert result.exit_code == 0
    assert "`reports/compare/pr_body.md` was not produced" in result.output
