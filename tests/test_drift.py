"""The drift workflow's steps on a real prediction log: sample it, run the comparison's Evidently
drift report against production's training data, and open (then comment on) one issue."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import yaml

from service.predlog import (
    PREDICTION_COLUMNS,
    connect,
    create_schema,
    placeholders,
    prediction_rows,
)
from tests.conftest import run
from tests.github_server import FakeGitHub

PY = [sys.executable, "-m", "pipelines"]
ROWS = 300


def log_predictions(url: str, texts: list[str], labels: list[str], log_text: str = "text"):
    """Rows as the service writes them, one request per text."""
    create_schema(url)
    rows = []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        rows += prediction_rows(f"r{i}", [text], [{"label": label, "model_version": "prod-v1",
                                                   "scores": {label: 0.9}}], 5.0, log_text)
    conn = connect(url)
    try:
        sql = (f"INSERT INTO predictions ({', '.join(PREDICTION_COLUMNS)}) "
               f"VALUES ({placeholders(url, len(PREDICTION_COLUMNS))})")
        conn.cursor().executemany(sql, rows)
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def repo(fresh_repo):
    """The repository copy with the drift sample held small (compare.drift_sample_rows)."""
    params = yaml.safe_load((fresh_repo / "params.yaml").read_text())
    params["compare"]["drift_sample_rows"] = ROWS
    (fresh_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return fresh_repo


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/predictions.db"
    return request.getfixturevalue("postgres_url")


def test_sample_takes_the_newest_predictions_with_their_text(repo, db_url):
    log_predictions(db_url, [f"text {i}" for i in range(ROWS + 50)], ["offensive"] * (ROWS + 50))
    run(PY + ["drift", "sample"], repo, MODERATION_DB_URL=db_url)
    sample = pd.read_csv(repo / "reports/drift/current.csv")
    assert len(sample) == ROWS
    assert sample.text.iloc[0] == f"text {ROWS + 49}" and set(sample.label) == {"offensive"}


def test_a_log_that_keeps_only_hashes_cannot_be_sampled(repo, tmp_path):
    url = f"sqlite:///{tmp_path}/hashed.db"
    log_predictions(url, ["hello"], ["not-offensive"], log_text="hash")
    result = run(PY + ["drift", "sample", "--db-url", url], repo, check=False)
    assert result.returncode == 1
    assert "no predictions with their text (serve.log_text: hash" in result.stderr


def test_a_bad_database_url_is_named(repo):
    result = run(PY + ["drift", "sample", "--db-url", "mysql://x"], repo, check=False)
    assert result.returncode == 1 and "'mysql://x': expected sqlite:///PATH" in result.stderr


def _github_env(gh: FakeGitHub) -> dict[str, str]:
    return {"GITHUB_API_URL": gh.url, "GITHUB_REPOSITORY": gh.repo, "GITHUB_TOKEN": gh.token}


def test_drifted_inputs_open_one_issue_and_a_repeat_comments_on_it(repo, tmp_path):
    url = f"sqlite:///{tmp_path}/predictions.db"
    texts = [f"BUY NOW https://t.co/x{i} #deal #sale LIMITED OFFER {i} !!!" for i in range(ROWS)]
    log_predictions(url, texts, ["offensive"] * ROWS)
    run(PY + ["drift", "sample", "--db-url", url], repo)
    report = run(PY + ["drift", "report"], repo)
    assert "drift: DRIFT in " in report.stdout
    summary = json.loads((repo / "reports/drift/summary.json").read_text())
    production = yaml.safe_load((repo / "models/production.yaml").read_text())["version"]
    assert summary["flagged"] and summary["production_version"] == production
    assert {"length", "label"} <= set(summary["drifted"])
    assert (repo / "reports/drift/drift.html").stat().st_size > 0
    with FakeGitHub() as gh:
        first = run(PY + ["drift", "open-issue"], repo, **_github_env(gh))
        second = run(PY + ["drift", "open-issue"], repo, **_github_env(gh))
        issues, comments = gh.issues(), gh.comments
    assert "created issue #1" in first.stdout and "commented issue #1" in second.stdout
    assert len(issues) == 1 and len(comments) == 1
    assert issues[0]["title"] == f"Input drift against production {production}"
    assert issues[0]["labels"] == [{"name": "drift"}]
    assert issues[0]["body"].startswith("## Input drift detected")


def test_predictions_like_the_training_data_open_no_issue(repo, tmp_path):
    import contextlib

    from pipelines.core.params import load_params
    from pipelines.core.production import read_pointer
    from pipelines.stages.compare import production_training_frame

    with contextlib.chdir(repo):
        params = load_params("params.yaml")
        reference = production_training_frame(read_pointer(), params)
    # Exactly the rows the report draws from the training data: nothing can differ.
    same = reference[["text", "label"]].sample(ROWS, random_state=params.compare.seed)
    url = f"sqlite:///{tmp_path}/predictions.db"
    log_predictions(url, list(same.text), list(same.label))
    run(PY + ["drift", "sample", "--db-url", url], repo)
    assert "drift: none" in run(PY + ["drift", "report"], repo).stdout
    with FakeGitHub() as gh:
        result = run(PY + ["drift", "open-issue"], repo, **_github_env(gh))
        assert gh.issues() == []
    assert "no drift; no issue" in result.stdout
    assert (repo / "reports/drift/summary.md").read_text().startswith("## No input drift")


def test_report_without_a_production_model_says_so(repo, tmp_path):
    (repo / "models/production.yaml").write_text("version: null\n")
    (repo / "reports/drift").mkdir(parents=True)
    (repo / "reports/drift/current.csv").write_text("text,label,model_version,created_at\n"
                                                   "hi,offensive,v,2026\n")
    result = run(PY + ["drift", "report"], repo, check=False)
    assert result.returncode == 1 and "version: null: no production model" in result.stderr
