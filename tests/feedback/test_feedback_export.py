"""`make feedback`: reviewed predictions become a new dataset version on a new branch, or nothing
changes at all."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections import Counter

import pandas as pd
import pytest
import yaml

from pipelines.core.data import file_md5, read_split
from pipelines.core.provenance import KEY_ENV, Proofs, read_records, text_sha256
from pipelines.monitor.feedback import plan_relabels, plan_rows
from service.review.store import ReviewStore, create_review_schema
from tests.conftest import pipelines_cli, run
from tests.feedback.conftest import LABELS, TOKEN, log_predictions

NEW_TEXTS = {"feedback loop test: you absolute walnut": "offensive",
             "feedback loop test: cheers for the quick fix": "not-offensive",
             "feedback loop test: go and sit in the corner, clown": "offensive"}


KEY = "a-test-provenance-key-of-forty-chars-xx"


@pytest.fixture(autouse=True)
def provenance_key(monkeypatch):
    """The secret `make feedback` signs review records with (CI's validate holds the same)."""
    monkeypatch.setenv(KEY_ENV, KEY)


def post_corrections(base: str, items: list[dict], reviewer: str = "alice") -> dict:
    request = urllib.request.Request(
        base + "/api/corrections", data=json.dumps({"items": items}).encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "X-Reviewer": reviewer,
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def logged_ids(base: str) -> dict[str, int]:
    request = urllib.request.Request(base + "/api/items?limit=500&status=all",
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "X-Reviewer": "alice"})
    with urllib.request.urlopen(request, timeout=10) as response:
        items = json.loads(response.read())["items"]
    return {item["text"] or item["text_sha256"]: item["id"] for item in items}


def git(repo, *args: str) -> str:
    return run(["git", *args], repo).stdout.strip()


def frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"id": f"r{i}", "text": t, "label": label, "source": "s"}
                         for i, (t, label) in enumerate(rows)])


def reviewed(text: str | None, label: str) -> dict:
    return {"id": 1, "text": text, "text_sha256": "0" * 64, "predicted": label, "label": label,
            "action": "confirmed", "reviewer": "r", "reviewed_at": "t"}


# -- which reviewed items become rows ----------------------------------------------------------

def test_plan_skips_hashed_duplicate_holdout_and_conflicting_items_and_counts_them():
    train = frame([("You are an IDIOT!", "offensive"), ("nice one", "not-offensive")])
    holdout = frame([("the frozen holdout text", "not-offensive")])
    plan = plan_rows([
        reviewed("you are an idiot", "offensive"),          # same text after normalise
        reviewed("Nice one.", "offensive"),                  # train says otherwise
        reviewed("The frozen holdout text", "offensive"),    # never into training
        reviewed(None, "offensive"),                         # only the hash was logged
        reviewed("brand new text", "offensive"),
        reviewed("Brand new text!!", "offensive"),           # the same, reviewed twice
        reviewed("argued about", "offensive"),
        reviewed("argued about", "not-offensive"),           # reviewers disagree
        reviewed("old label set", "spam"),
    ], train, holdout, LABELS, "feedback")
    assert plan.rows.to_dict("records") == [
        {"id": plan.rows.id[0], "text": "brand new text", "label": "offensive",
         "source": "feedback"}]
    assert plan.rows.id[0].startswith("feedback-")
    [record] = plan.records
    assert (record.id, record.text_sha256, record.label, record.reviewer) == (
        plan.rows.id[0], text_sha256("brand new text"), "offensive", "r")
    assert plan.skipped == Counter(already_in_train=1, train_has_other_label=1,
                                   in_frozen_holdout=1, text_only_hashed=1, duplicate_reviews=1,
                                   reviews_disagree=2, label_not_in_data_labels=1)


# -- end to end --------------------------------------------------------------------------------

@pytest.mark.slow
def test_logged_and_corrected_predictions_become_a_new_data_version_on_a_branch(
        fresh_repo, db_url, review_ui):
    repo = fresh_repo
    train_before = read_split(repo / "data/train.csv")
    train_bytes = (repo / "data/train.csv").read_bytes()
    holdout_md5 = file_md5(repo / "data/holdout.csv")
    old_pointer = (repo / "data.dvc").read_text()
    start_branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    in_train = train_before.iloc[0]
    in_holdout = read_split(repo / "data/holdout.csv").iloc[0]

    log_predictions(db_url, [[(text, 0.5, "model-a") for text in NEW_TEXTS]
                             + [(in_train.text, 0.4, "model-a"),
                                (in_holdout.text, 0.6, "model-a")]])
    log_predictions(db_url, [[("feedback loop test: private words", 0.7, "model-a")]],
                    log_text="hash")
    base = review_ui(db_url)
    ids = logged_ids(base)
    hashed_id = next(v for k, v in ids.items() if k not in NEW_TEXTS and len(k) == 64)
    saved = post_corrections(base, [{"id": ids[t], "label": label}
                                    for t, label in NEW_TEXTS.items()]
                             + [{"id": ids[in_train.text], "label": in_train.label},
                                {"id": ids[in_holdout.text], "label": "offensive"},
                                {"id": hashed_id, "label": "offensive"}])
    assert saved["saved"] == 6

    result = run(["make", "-o", "venv", "feedback", f"DB_URL={db_url}"], repo)

    out = result.stdout
    assert "added 3 row(s) to data/train.csv" in out
    assert "text_only_hashed=1" in out and "already_in_train=1" in out
    assert "in_frozen_holdout=1" in out
    new_pointer = yaml.safe_load((repo / "data.dvc").read_text())
    new_hash = new_pointer["outs"][0]["md5"].removesuffix(".dir")
    old_hash = yaml.safe_load(old_pointer)["outs"][0]["md5"].removesuffix(".dir")
    assert new_hash != old_hash and f"data: {old_hash} -> {new_hash}" in out

    branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    assert branch.startswith("feedback/") and branch != start_branch and branch in out
    assert "data.dvc" in git(repo, "show", "--name-only", "--format=", "HEAD").split("\n")
    assert git(repo, "status", "--porcelain", "--", "data.dvc") == ""

    train_after = read_split(repo / "data/train.csv")
    assert len(train_after) == len(train_before) + 3
    pd.testing.assert_frame_equal(train_after.head(len(train_before)), train_before)
    assert (repo / "data/train.csv").read_bytes().startswith(train_bytes)  # appended
    added = train_after.tail(3)
    assert dict(zip(added.text, added.label, strict=True)) == NEW_TEXTS
    assert set(added.source) == {"feedback"}
    assert file_md5(repo / "data/holdout.csv") == holdout_md5
    report = json.loads((repo / "reports/validation.json").read_text())
    assert report["passed"] and report["dataset_md5"] == new_hash
    # Each written row has a signed review record, committed with data.dvc: validate trusts them.
    assert "data.provenance.jsonl" in git(repo, "show", "--name-only", "--format=", "HEAD")
    records = [r for _, r in read_records(repo / "data.provenance.jsonl")]
    assert sorted((r.id, r.label, r.reviewer) for r in records) == sorted(
        zip(added.id, added.label, ["alice"] * 3, strict=True))
    proofs = Proofs(repo / "data.provenance.jsonl", KEY.encode())
    assert all(proofs.why_unproven(r.id, r.text, r.label) is None for r in added.itertuples())
    assert report["label_noise"]["reviewed_rows"] == 3
    assert "feedback_unproven" not in report["by_rule"]

    # The branch alone resolves the new data (what the retrain workflow does in CI).
    clone = repo.parent / "clone"
    run(["git", "clone", "-q", "--branch", branch, str(repo), str(clone)], repo.parent)
    run([sys.executable, "-m", "pipelines", "data", "pull"], clone)
    assert file_md5(clone / "data/train.csv") == file_md5(repo / "data/train.csv")


def export(repo, db_url):
    return pipelines_cli(["feedback", "--db-url", db_url], repo, check=False)


def state(repo) -> tuple:
    branches = subprocess.run(["git", "branch", "--format=%(refname:short)"], cwd=repo,
                              capture_output=True, text=True, check=True).stdout
    return (file_md5(repo / "data/train.csv"), (repo / "data.dvc").read_text(),
            sorted(branches.split()), git(repo, "status", "--porcelain"))


@pytest.mark.slow
def test_export_refuses_to_run_when_data_differs_from_its_pointer(fresh_repo, tmp_path):
    url = f"sqlite:///{tmp_path}/log.db"
    log_predictions(url, [[("feedback loop test: a fresh text", 0.5, "model-a")]])
    with (fresh_repo / "data/train.csv").open("a") as handle:
        handle.write("local-1,an unrecorded local edit,offensive,me\n")
    before = state(fresh_repo)
    result = run([sys.executable, "-m", "pipelines", "feedback", "--db-url", url], fresh_repo,
                 check=False)  # the command as a process (the other tests run it in-process)
    assert result.returncode == 1
    assert "data/ differs from data.dvc" in result.stderr and "dvc checkout" in result.stderr
    assert state(fresh_repo) == before


@pytest.mark.slow
def test_failed_validation_restores_data_and_makes_no_branch(fresh_repo, tmp_path, review_ui):
    url = f"sqlite:///{tmp_path}/log.db"
    too_long = "feedback loop test " + "x" * 1200  # over validate.max_chars
    log_predictions(url, [[(too_long, 0.5, "model-a"), ("feedback loop test: ok", 0.5,
                                                         "model-a")]])
    base = review_ui(url)
    ids = logged_ids(base)
    post_corrections(base, [{"id": i, "label": "offensive"} for i in ids.values()])
    before = state(fresh_repo)
    result = export(fresh_repo, url)
    assert result.returncode == 1
    assert "fails validation, nothing was exported" in result.stderr
    assert "too_long" in result.stdout and "1219 characters" in result.stdout
    assert state(fresh_repo) == before
    assert json.loads(run(["dvc", "status", "--json", "data.dvc"], fresh_repo).stdout) == {}


@pytest.mark.slow
def test_export_with_nothing_new_changes_nothing(fresh_repo, tmp_path, review_ui):
    url = f"sqlite:///{tmp_path}/log.db"
    known = read_split(fresh_repo / "data/train.csv").iloc[3]
    log_predictions(url, [[(known.text, 0.5, "model-a")]])
    base = review_ui(url)
    post_corrections(base, [{"id": i, "label": known.label} for i in logged_ids(base).values()])
    before = state(fresh_repo)
    result = export(fresh_repo, url)
    assert result.returncode == 0, result.stderr
    assert "nothing new to add" in result.stdout and "already_in_train=1" in result.stdout
    assert state(fresh_repo) == before


def test_plan_never_writes_control_characters_into_the_training_data():
    plan = plan_rows([reviewed("clear screen \x1b[2J now", "offensive"),
                      reviewed("bell \x07", "offensive"),
                      reviewed("=cmd|' /C calc'!A0 stays: formulas are texts", "offensive")],
                     frame([("unrelated", "offensive")]), frame([("other", "offensive")]),
                     LABELS, "feedback")
    assert list(plan.rows.text) == ["=cmd|' /C calc'!A0 stays: formulas are texts"]
    assert plan.skipped == Counter(control_characters=2)


@pytest.mark.slow
def test_export_without_the_signing_key_refuses_and_changes_nothing(fresh_repo, tmp_path,
                                                                     review_ui, monkeypatch):
    url = f"sqlite:///{tmp_path}/log.db"
    log_predictions(url, [[("feedback loop test: unsigned", 0.5, "model-a")]])
    base = review_ui(url)
    post_corrections(base, [{"id": i, "label": "offensive"} for i in logged_ids(base).values()])
    monkeypatch.delenv(KEY_ENV)
    before = state(fresh_repo)
    result = export(fresh_repo, url)
    assert result.returncode == 1 and f"{KEY_ENV} is not set" in result.stderr
    assert state(fresh_repo) == before


def test_export_names_a_missing_sqlite_log(fresh_repo, tmp_path):
    result = export(fresh_repo, f"sqlite:///{tmp_path}/nowhere.db")
    assert result.returncode == 1 and "nowhere.db does not exist" in result.stderr


# -- label decisions on suspicious training rows -----------------------------------------------

def decision(row_id: str, text: str, given: str, label: str) -> dict:
    return {"id": row_id, "text": text, "given": given, "label": label,
            "action": "kept" if label == given else "changed", "reviewer": "r",
            "reviewed_at": "t"}


def test_relabel_plan_changes_only_rows_with_the_same_id_text_and_label_and_marks_them():
    long_text = "a long training text " * 20  # the report shows its first 200 characters
    train = pd.DataFrame([
        {"id": "a", "text": "you clown", "label": "not-offensive", "source": "s"},
        {"id": "b", "text": long_text, "label": "offensive", "source": "s"},
        {"id": "c", "text": "edited since the report", "label": "offensive", "source": "s"},
        {"id": "d", "text": "relabelled by hand since", "label": "spam", "source": "s"},
        {"id": "e", "text": "kept as it is", "label": "offensive", "source": "s"},
        {"id": "f", "text": "already fixed", "label": "offensive", "source": "s"}])
    plan = plan_relabels([
        decision("a", "you clown", "not-offensive", "offensive"),
        decision("b", long_text[:200], "offensive", "not-offensive"),
        decision("c", "the text the report showed", "offensive", "not-offensive"),
        decision("d", "relabelled by hand since", "offensive", "not-offensive"),
        decision("e", "kept as it is", "offensive", "offensive"),
        decision("f", "already fixed", "not-offensive", "offensive"),
        decision("gone", "a row no longer there", "offensive", "not-offensive"),
    ], train, [*LABELS, "spam"], "feedback")
    assert list(plan.train.label) == ["offensive", "not-offensive", "offensive", "spam",
                                      "offensive", "offensive"]
    assert list(plan.train.source) == ["feedback", "feedback", "s", "s", "s", "s"]
    assert plan.changed[["id", "line", "old", "label"]].to_dict("records") == [
        {"id": "a", "line": 2, "old": "not-offensive", "label": "offensive"},
        {"id": "b", "line": 3, "old": "offensive", "label": "not-offensive"}]
    assert plan.skipped == Counter(labels_kept=1, relabel_text_changed=1, relabel_row_gone=1,
                                   relabel_label_changed_since_review=1,
                                   relabel_already_applied=1)
    assert list(train.label)[0] == "not-offensive"  # the input frame is not modified


@pytest.mark.slow
def test_export_changes_exactly_the_relabelled_training_rows_and_never_the_holdout(
        fresh_repo, db_url):
    repo = fresh_repo
    train_before = read_split(repo / "data/train.csv")
    holdout_md5 = file_md5(repo / "data/holdout.csv")
    old_pointer = (repo / "data.dvc").read_text()
    flip = {"not-offensive": "offensive", "offensive": "not-offensive"}
    relabelled, kept = train_before.iloc[[4, 9]], train_before.iloc[12]
    suspicious = [{"file": "data/train.csv", "line": int(i) + 2, "id": r.id, "label": r.label,
                   "suggested": flip[r.label], "confidence": 0.9, "text": r.text[:200]}
                  for i, r in [*relabelled.iterrows(), (12, kept)]]
    create_review_schema(db_url)
    store = ReviewStore(db_url, LABELS)
    store.save_label_decisions([(s, flip[s["label"]]) for s in suspicious[:2]]
                               + [(suspicious[2], kept.label)], "alice")

    result = export(repo, db_url)

    assert result.returncode == 0, result.stderr
    assert "changed 2 label(s) in data/train.csv" in result.stdout
    assert "labels_kept=1" in result.stdout
    train_after = read_split(repo / "data/train.csv")
    expected = train_before.copy()
    for i in relabelled.index:  # reviewed labels, which the label_noise rule trusts
        expected.at[i, "label"] = flip[expected.at[i, "label"]]
        expected.at[i, "source"] = "feedback"
        assert f"data/train.csv:{i + 2} " in result.stdout
    pd.testing.assert_frame_equal(train_after, expected)
    assert file_md5(repo / "data/holdout.csv") == holdout_md5
    assert (repo / "data.dvc").read_text() != old_pointer
    branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    assert branch.startswith("feedback/")
    assert "change 2 label(s)" in git(repo, "log", "-1", "--format=%s")
    records = [r for _, r in read_records(repo / "data.provenance.jsonl")]
    assert sorted(r.id for r in records) == sorted(relabelled.id)
    assert json.loads((repo / "reports/validation.json").read_text())["label_noise"][
        "reviewed_rows"] == 2
    assert git(repo, "status", "--porcelain", "--", "data.dvc") == ""
