"""The drift workflow's steps on a real prediction log: sample it, report input drift against
production's training data and prediction drift against the serving model's holdout predictions,
and open (then comment on) one issue. The end-to-end tests log through the real service."""

from __future__ import annotations

import json
import re
import sys
import urllib.request

import pandas as pd
import pytest
import yaml

from service.kept_text import TextPolicy
from service.predlog import (
    connect,
    create_schema,
    make_engine,
    prediction_rows,
    predictions,
)
from tests.conftest import pipelines_cli, run, wait_until
from tests.github_server import FakeGitHub
from tests.service.server import running_service

PY = [sys.executable, "-m", "pipelines"]
ROWS = 300


def log_predictions(url: str, texts: list[str], labels: list[str],
                    log_text: str | TextPolicy = "text"):
    """Rows as the service writes them, one request per text."""
    create_schema(url)
    rows = []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        score = 0.9 if label == "offensive" else 0.1
        prediction = {"label": label, "model_version": "prod-v1",
                      "scores": {"not-offensive": 1 - score, "offensive": score}}
        rows += prediction_rows(f"r{i}", [text], [prediction], 5.0, log_text,
                                positive="offensive")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(predictions.insert(), rows)
    finally:
        engine.dispose()


@pytest.fixture
def repo(fresh_repo):
    """The repository copy with the drift sample held small (compare.drift_sample_rows)."""
    params = yaml.safe_load((fresh_repo / "params.yaml").read_text())
    params["compare"]["drift_sample_rows"] = ROWS
    (fresh_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return fresh_repo


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A migrated, empty log (as the migrate Job leaves it) on SQLite, then PostgreSQL."""
    url = (f"sqlite:///{tmp_path}/predictions.db" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    create_schema(url)
    return url


def test_sample_takes_the_newest_predictions_with_their_text(repo, db_url):
    log_predictions(db_url, [f"text {i}" for i in range(ROWS + 50)], ["offensive"] * (ROWS + 50))
    pipelines_cli(["drift", "sample"], repo, MODERATION_DB_URL=db_url)
    sample = pd.read_csv(repo / "reports/drift/current.csv")
    assert len(sample) == ROWS
    assert sample.text.iloc[0] == f"text {ROWS + 49}" and set(sample.label) == {"offensive"}
    assert set(sample.score) == {0.9} and set(sample.model_version) == {"prod-v1"}


def test_a_log_that_keeps_only_hashes_cannot_be_sampled(repo, tmp_path):
    url = f"sqlite:///{tmp_path}/hashed.db"
    log_predictions(url, ["hello"], ["not-offensive"], log_text="hash")
    result = pipelines_cli(["drift", "sample", "--db-url", url], repo, check=False)
    assert result.returncode == 1
    assert "no predictions with their text kept as a random sample (serve.log_text: hash" \
        in result.stderr


def test_a_sampled_log_gives_drift_only_its_unbiased_random_share(repo, db_url):
    """With log_text: sample, flagged texts are all kept but only the random share is a fair
    picture of traffic: the drift sample takes those rows alone."""
    import random

    policy = TextPolicy("sample", share=0.2, uncertain=0.15, rng=random.Random(7))
    n = 1000
    labels = ["offensive" if i % 3 == 0 else "not-offensive" for i in range(n)]
    log_predictions(db_url, [f"text {i} mail me at a.b@example.com" for i in range(n)], labels,
                    log_text=policy)
    kept = dict(connect_rows(db_url, "SELECT text_kept, COUNT(*) FROM predictions "
                                     "WHERE text IS NOT NULL GROUP BY text_kept"))
    pipelines_cli(["drift", "sample", "--db-url", db_url], repo)
    sample = pd.read_csv(repo / "reports/drift/current.csv")
    assert len(sample) == min(ROWS, kept["sampled"])
    # The flagged rows outside the random share are kept (for review) but not sampled: the
    # sample's offensive share stays near traffic's third, not the kept rows' majority.
    assert kept["flagged"] > 0
    assert abs((sample.label == "offensive").mean() - 1 / 3) < 0.1
    assert sample.text.str.contains("EMAIL").all() and not sample.text.str.contains("@").any()


def connect_rows(url: str, sql: str) -> list[tuple]:
    conn = connect(url)
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()


def test_a_bad_database_url_is_named(repo):
    result = run(PY + ["drift", "sample", "--db-url", "mysql://x"], repo, check=False)
    assert result.returncode == 1 and "'mysql://x': expected sqlite:///PATH" in result.stderr


def _github_env(gh: FakeGitHub) -> dict[str, str]:
    return {"GITHUB_API_URL": gh.url, "GITHUB_REPOSITORY": gh.repo, "GITHUB_TOKEN": gh.token}


def test_drifted_inputs_open_one_issue_and_a_repeat_comments_on_it(repo, tmp_path):
    url = f"sqlite:///{tmp_path}/predictions.db"
    texts = [f"BUY NOW https://t.co/x{i} #deal #sale LIMITED OFFER {i} !!!" for i in range(ROWS)]
    log_predictions(url, texts, ["offensive"] * ROWS)
    pipelines_cli(["drift", "sample", "--db-url", url], repo)
    report = pipelines_cli(["drift", "report"], repo)
    assert "drift: DRIFT in " in report.stdout
    summary = json.loads((repo / "reports/drift/summary.json").read_text())
    production = yaml.safe_load((repo / "models/production.yaml").read_text())["version"]
    assert summary["flagged"] and summary["production_version"] == production
    assert {"length", "url_share", "mention_share"} <= set(summary["drifted"])
    # The log names another model than production's weights: no holdout predictions to compare.
    assert "no logged prediction in the sample is from" in summary["prediction"]["skipped"]
    assert (repo / "reports/drift/drift.html").stat().st_size > 0
    with FakeGitHub() as gh:
        first = pipelines_cli(["drift", "open-issue"], repo, **_github_env(gh))
        second = pipelines_cli(["drift", "open-issue"], repo, **_github_env(gh))
        issues, comments = gh.issues(), gh.comments
    assert "created issue #1" in first.stdout and "commented issue #1" in second.stdout
    assert len(issues) == 1 and len(comments) == 1
    assert issues[0]["title"] == f"Drift against production {production}"
    assert issues[0]["labels"] == [{"name": "drift"}]
    assert issues[0]["body"].startswith("## Drift detected in length")


def classify_in_requests_of_8(base: str, texts: list[str]) -> None:
    for start in range(0, len(texts), 8):
        request = urllib.request.Request(
            base + "/classify", data=json.dumps({"texts": texts[start:start + 8]}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            assert resp.status == 200


def logged_rows(url: str) -> int:
    conn = connect(url)
    try:
        return conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
    finally:
        conn.close()


def without_mentions_with_a_link(text: str) -> str:
    return re.sub(r"@\w+\s*", "", text).strip() + " https://t.co/abc123"


def test_served_holdout_traffic_opens_no_issue_and_shifted_traffic_opens_one_naming_columns(
        repo, db_url, tmp_path):
    production = yaml.safe_load((repo / "models/production.yaml").read_text())["version"]
    holdout = pd.read_csv(repo / "data/holdout.csv", dtype=str, keep_default_na=False)
    settings = {"model_dir": str(repo / "models/production"), "db_url": db_url}
    with running_service(repo, settings, tmp_path / "server.log") as (base, _), \
            FakeGitHub() as gh:
        classify_in_requests_of_8(base, list(holdout.text[:ROWS]))
        assert wait_until(lambda: logged_rows(db_url) == ROWS, timeout=30)
        run(PY + ["drift", "sample", "--db-url", db_url], repo)
        report = run(PY + ["drift", "report"], repo)
        assert "drift: none" in report.stdout, (repo / "reports/drift/summary.md").read_text()
        assert "no drift; no issue" in run(PY + ["drift", "open-issue"], repo,
                                           **_github_env(gh)).stdout
        summary = json.loads((repo / "reports/drift/summary.json").read_text())
        assert summary["served_versions"] == [production]
        assert summary["prediction"]["model_version"] == production
        assert gh.issues() == []

        shifted = [without_mentions_with_a_link(t) for t in holdout.text[ROWS:2 * ROWS]]
        classify_in_requests_of_8(base, shifted)
        assert wait_until(lambda: logged_rows(db_url) == 2 * ROWS, timeout=30)
        run(PY + ["drift", "sample", "--db-url", db_url], repo)
        assert "drift: DRIFT in " in run(PY + ["drift", "report"], repo).stdout
        result = run(PY + ["drift", "open-issue"], repo, **_github_env(gh))
        issues = gh.issues()
    assert "created issue #1" in result.stdout and len(issues) == 1
    assert issues[0]["title"] == f"Drift against production {production}"
    head = issues[0]["body"].splitlines()[0]
    assert head.startswith("## Drift detected in ")
    assert {"mention_share", "url_share"} <= set(head.removeprefix("## Drift detected in ")
                                                  .split(", "))
    assert "| mention_share | " in issues[0]["body"] and "drift_calibration.py" in issues[0]["body"]


def test_report_without_a_production_model_says_so(repo, tmp_path):
    (repo / "models/production.yaml").write_text("version: null\n")
    (repo / "reports/drift").mkdir(parents=True)
    (repo / "reports/drift/current.csv").write_text("text,label,score,model_version,created_at\n"
                                                   "hi,offensive,0.9,v,2026\n")
    result = pipelines_cli(["drift", "report"], repo, check=False)
    assert result.returncode == 1 and "version: null: no production model" in result.stderr


def test_report_on_a_sample_from_an_older_version_names_the_missing_column(repo):
    (repo / "reports/drift").mkdir(parents=True)
    (repo / "reports/drift/current.csv").write_text("text,label,model_version,created_at\n"
                                                   "hi,offensive,v,2026\n")
    result = pipelines_cli(["drift", "report"], repo, check=False)
    assert result.returncode == 1 and "missing column(s) ['score']" in result.stderr


def test_report_without_the_serving_models_weights_says_how_to_fetch_them(repo, tmp_path):
    url = f"sqlite:///{tmp_path}/predictions.db"
    log_predictions(url, ["hello there"], ["not-offensive"])
    pipelines_cli(["drift", "sample", "--db-url", url], repo)
    result = pipelines_cli(["drift", "report", "--model", str(tmp_path / "nothing")], repo,
                           check=False)
    assert result.returncode == 1 and "`make production`" in result.stderr


def test_tiny_shifts_in_large_samples_and_noise_in_small_ones_are_not_drift():
    import numpy as np

    from pipelines.analysis.drift_measures import judge_columns

    rng = np.random.default_rng(0)

    def verdict(n: int, shift: float) -> dict:
        reference = pd.DataFrame({"x": rng.normal(0, 1, n)})
        current = pd.DataFrame({"x": rng.normal(shift, 1, n)})
        return judge_columns(reference, current, {"x": 0.2}, 0.05)["x"]

    tiny = verdict(50_000, 0.05)  # significant, too small to matter
    assert tiny["p_value"] < 1e-6 and tiny["effect"] < 0.2 and not tiny["drifted"]
    noisy = verdict(12, 0.0)  # a large effect by chance, not significant
    assert noisy["effect"] >= 0.2 and noisy["p_value"] > 0.05 and not noisy["drifted"]
    assert verdict(3000, 0.5)["drifted"]


def test_unseen_words_of_training_texts_are_comparable_with_those_of_other_texts(repo):
    from pipelines.analysis.drift_measures import HeldOutVocabulary

    train = pd.read_csv(repo / "data/train.csv", dtype=str, keep_default_na=False).text
    holdout = pd.read_csv(repo / "data/holdout.csv", dtype=str, keep_default_na=False).text
    vocabulary = HeldOutVocabulary(train)
    own = sum(map(vocabulary.unseen_share, train)) / len(train)
    other = sum(map(vocabulary.unseen_share, holdout)) / len(holdout)
    assert own > 0.03 and abs(own - other) < 0.01  # not 0 by construction
    assert vocabulary.unseen_share("the quixotic zymurgist") > 0
    assert vocabulary.unseen_share("@user") == 0.0  # in both halves


def test_the_verdict_uses_the_distance_evidentlys_report_shows(tmp_path):
    import numpy as np

    from pipelines.analysis.evidently_reports import drift_report

    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 400), "b": rng.random(400) < 0.3})
    current = pd.DataFrame({"a": rng.normal(0.6, 1, 400), "b": rng.random(400) < 0.3})
    result = drift_report(reference.astype(float), current.astype(float),
                          {"a": 0.2, "b": 0.1}, 0.05, tmp_path)
    shown = {m["config"]["column"]: float(m["value"])
             for m in json.loads((tmp_path / "drift.json").read_text())["metrics"]
             if m["config"].get("type", "").endswith("ValueDrift")}
    assert shown == pytest.approx({c: v["value"] for c, v in result["columns"].items()},
                                  abs=1e-4)
    assert result["drifted"] == ["a"]
