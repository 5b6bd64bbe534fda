"""The label_noise rule on a carved history: production learned the first rows of the bundled
training split, the new data version adds the rest (the same source), with labels flipped on
purpose. The flipped share is known, so each estimate is checked against it."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.analysis.data_checks import _Collector, scan_split
from pipelines.analysis.label_noise import check_label_noise
from pipelines.core.data import read_split, write_split
from pipelines.core.production import ProductionRecord, pointer_text, read_pointer
from pipelines.core.provenance import Proofs, ReviewRecord, append_records, text_sha256
from pipelines.runtime.metadata import ModelMetadata
from pipelines.runtime.params import load_params
from tests.conftest import run

PRODUCTION_ROWS = 9000
LABELS = ["not-offensive", "offensive"]
OTHER = dict(zip(LABELS, reversed(LABELS), strict=True))


@pytest.fixture(scope="module")
def carved_repo(base_repo, tmp_path_factory) -> Path:
    """A copy whose production model and data version are the first PRODUCTION_ROWS rows."""
    repo = Path(shutil.copytree(base_repo, tmp_path_factory.mktemp("carved") / "repo",
                                symlinks=True))
    full = read_split(repo / "data/train.csv")
    write_split(full.head(PRODUCTION_ROWS), repo / "data/train.csv")
    run(["dvc", "add", "--quiet", "data"], repo)
    run(["python", "-m", "pipelines.stages.baseline", "--out", "models/production"], repo)
    metadata = ModelMetadata.load(repo / "models/production")
    (repo / "models/production.yaml").write_text(pointer_text(ProductionRecord(
        version=metadata.version, kind=metadata.kind, dataset=metadata.dataset,
        holdout_md5=metadata.holdout_md5, params=metadata.params,
        git_commit=metadata.git_commit, metrics={}, bento_tag=None, image=None)))
    write_split(full, repo / "data/train.csv")
    return repo


@pytest.fixture
def in_carved(carved_repo, monkeypatch) -> Path:
    monkeypatch.chdir(carved_repo)
    return carved_repo


def _flip(frame: pd.DataFrame, rows) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[rows, "label"] = frame.loc[rows, "label"].map(OTHER)
    return frame


def _new_rows(frame: pd.DataFrame) -> pd.Index:
    return frame.index[PRODUCTION_ROWS:]


def _label_noise(train: pd.DataFrame, proofs: Proofs | None = None, chunk_rows: int = 20_000,
                 params=None) -> tuple[dict, list[tuple], list]:
    """The rule as validate runs it: the split written to a file and streamed (chunk_rows at a
    time). Returns the report, the label_noise findings and validate's row findings."""
    params = params or load_params("params.yaml")
    path = Path(tempfile.mkdtemp(dir=".")) / "train.csv"
    write_split(train, path)
    out = _Collector(params.validate_.severity.model_dump(by_alias=True))
    proofs = proofs or Proofs(path.with_name("none.jsonl"), None)
    scan = scan_split(str(path), params.data.labels, params.validate_.max_chars, out, proofs,
                      params.feedback.source, chunk_rows)
    holdout = scan_split(params.data.holdout_file, params.data.labels,
                         params.validate_.max_chars, out)
    findings = []
    report = check_label_noise(params, scan, holdout, read_pointer("models/production.yaml"),
                               lambda *finding: findings.append(finding))
    return report, findings, out.findings


def _assert_within(found: dict, true_share: float) -> None:
    assert found["low"] <= true_share <= found["high"], (true_share, found)


def _true_share(flipped: int, report: dict) -> float:
    return flipped / report["changed_rows"]


def test_clean_new_rows_from_the_same_source_pass(in_carved):
    report, findings, _ = _label_noise(read_split("data/train.csv"))
    assert report["changed_rows"] == len(read_split("data/train.csv")) - PRODUCTION_ROWS
    assert not report["flagged"] and findings == []
    assert set(report["scorers"]) == {"production", "out_of_fold"}
    for found in report["scorers"].values():
        _assert_within(found, 0.0)


def _random_flips(rate: float, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    full = read_split("data/train.csv")
    new = _new_rows(full)
    flipped = np.random.default_rng(seed).choice(new, int(rate * len(new)), replace=False)
    return _flip(full, flipped), flipped


@pytest.mark.parametrize("rate", [0.10, 0.30])
def test_random_flips_are_flagged_with_the_true_rate_inside_the_interval(in_carved, rate):
    train, flipped = _random_flips(rate)
    report, findings, _ = _label_noise(train)
    assert report["flagged"] and report["estimate"]["scorer"] == "out_of_fold"
    _assert_within(report["estimate"], _true_share(len(flipped), report))
    [(rule, file, row, message)] = findings
    assert (rule, row) == ("label_noise", None) and file.endswith("train.csv")
    top = report["suspicious"][:20]
    assert f"{file}:{top[0]['line']}" in message
    flipped_lines = {int(i) + 2 for i in flipped}
    assert np.mean([row["line"] in flipped_lines for row in top]) >= 0.5
    _assert_lines_hold_their_ids(file, report["suspicious"])


def _assert_lines_hold_their_ids(file: str, suspicious: list[dict]) -> None:
    """Each suspicious row's line is the one its id starts in the file (quoted newlines
    counted): what the finding, the review queue and the PR body show."""
    lines = Path(file).read_text(encoding="utf-8").split("\n")
    for row in suspicious:
        assert row["file"] == file
        assert lines[row["line"] - 1].startswith(f"{row['id']},"), (row, lines[row["line"] - 1])


def test_suspicious_lines_are_file_lines_behind_multiline_texts(in_carved):
    """Texts with quoted line breaks before the flipped rows shift every later line; the
    report still names the line each id starts on."""
    train, flipped = _random_flips(0.30)
    train.loc[:40, "text"] = train.loc[:40, "text"] + "\nsecond line"
    report, findings, _ = _label_noise(train)
    [(_, file, _, message)] = findings
    _assert_lines_hold_their_ids(file, report["suspicious"])
    assert f"{file}:{report['suspicious'][0]['line']}" in message


def test_above_max_rows_a_sample_is_scored_and_its_interval_holds_the_true_share(in_carved):
    params = load_params("params.yaml")
    lp = params.validate_.label_noise
    assert lp.max_rows > len(_new_rows(read_split("data/train.csv"))), "bundled data sampled"
    train, flipped = _random_flips(0.30, seed=3)
    capped = params.model_copy(update={"validate_": params.validate_.model_copy(update={
        "label_noise": lp.model_copy(update={"max_rows": 800})})})
    report, findings, _ = _label_noise(train, params=capped, chunk_rows=997)
    assert report["sampled"]["changed_rows"] == 800 and report["changed_rows"] > 800
    assert report["scorers"]["out_of_fold"]["rows"] == 800
    assert report["flagged"] and len(findings) == 1
    _assert_within(report["estimate"], _true_share(len(flipped), report))
    _assert_lines_hold_their_ids(findings[0][1], report["suspicious"])


def test_pr_body_shows_the_estimate_and_the_worst_rows(in_carved, tmp_path):
    from pipelines.analysis.pr_body import label_noise_lines
    from pipelines.stages.compare import label_noise_section

    train, _ = _random_flips(0.30)
    report, _, _ = _label_noise(train)
    validation = tmp_path / "validation.json"
    validation.write_text(json.dumps({"dataset_md5": "abc", "label_noise": report}))
    body = "\n".join(label_noise_lines(label_noise_section(validation, "abc", False)))
    estimate = report["estimate"]
    assert f"An estimated **{estimate['share']:.1%} [{estimate['low']:.1%}, " in body
    assert "**above the limit** of 5.0%" in body
    top = report["suspicious"][0]
    assert f"| `{top['file']}:{top['line']}` | {top['id']} | {top['label']} |" in body
    _assert_lines_hold_their_ids(top["file"], report["suspicious"])
    # The review UI's queue shows the same lines (it reads them from the report).
    from tests.feedback.test_label_queue import AUTH, queue_client

    queue = queue_client(f"sqlite:///{tmp_path}/log.db", validation).get(
        "/api/label-queue", headers=AUTH).json()["items"]
    assert {(i["id"], i["line"]) for i in queue} == {
        (r["id"], r["line"]) for r in report["suspicious"]}
    masked = "\n".join(label_noise_lines(label_noise_section(validation, "abc", True)))
    assert top["text"][:40] not in masked and "sha256:" in masked
    stale = label_noise_section(validation, "other", False)
    assert "rerun the validate stage" in stale["skipped"]


def test_flips_targeted_at_one_slice_are_flagged_in_that_slice(in_carved):
    full = read_split("data/train.csv")
    hashtag = load_params("params.yaml").evaluate.slices["hashtag"]
    has_tag = full.text.map(lambda t: bool(re.search(hashtag, t)))
    # A poisoner teaching the model that offensive texts with hashtags are fine.
    flipped = [i for i in _new_rows(full) if has_tag[i] and full.label[i] == "offensive"]
    report, findings, _ = _label_noise(_flip(full, flipped))
    assert "out_of_fold/hashtag" in report["flagged_by"] and len(findings) == 1
    assert "by slice: hashtag" in findings[0][3]
    in_slice = report["scorers"]["out_of_fold"]["slices"]["hashtag"]
    _assert_within(in_slice, len(flipped) / has_tag[_new_rows(full)].sum())
    _assert_within(report["estimate"], _true_share(len(flipped), report))


KEY = "k" * 40


def _signed(rows: pd.DataFrame, path: Path, monkeypatch, key: str = KEY) -> Proofs:
    """Review records for these rows as `make feedback` writes them, checked under KEY."""
    path.unlink(missing_ok=True)
    append_records(path, [ReviewRecord(r.id, text_sha256(r.text), r.label, "alice",
                                       "2026-01-01T00:00:00Z") for r in rows.itertuples()],
                   key.encode())
    monkeypatch.setenv("MODERATION_PROVENANCE_KEY", KEY)
    return Proofs(path, KEY.encode())


def test_feedback_export_of_genuine_corrections_is_not_flagged(in_carved, monkeypatch):
    from pipelines.runtime.classifier import load_classifier

    full = read_split("data/train.csv")
    served = full.iloc[PRODUCTION_ROWS:]
    doubt = np.abs(load_classifier("models/production").predict_proba(list(served.text))[:, 1]
                   - 0.5)
    # The review UI lists the least certain predictions first; reviewers give the true label.
    reviewed = served.iloc[np.argsort(doubt)[:600]].assign(source="feedback")
    reviewed["id"] = ["feedback-" + hashlib.sha256(t.encode()).hexdigest()[:12]
                      for t in reviewed.text]
    train = pd.concat([full.head(PRODUCTION_ROWS), reviewed], ignore_index=True)
    proofs = _signed(reviewed, in_carved / "provenance.jsonl", monkeypatch)
    report, findings, row_findings = _label_noise(train, proofs)
    assert not report["flagged"] and findings == []
    assert report["reviewed_rows"] == 600 and report["changed_rows"] == 0
    assert not [f for f in row_findings if f.rule == "feedback_unproven"]


def test_thirty_percent_flip_stops_the_pipeline_at_validate(carved_repo, tmp_path):
    repo = Path(shutil.copytree(carved_repo, tmp_path / "repo", symlinks=True))
    full = read_split(repo / "data/train.csv")
    flipped = np.random.default_rng(2).choice(_new_rows(full), int(0.3 * len(_new_rows(full))),
                                              replace=False)
    write_split(_flip(full, flipped), repo / "data/train.csv")
    started = time.monotonic()
    result = run(["dvc", "repro"], repo, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "ERROR [label_noise] data/train.csv: an estimated" in output
    assert not (repo / "models/candidate").exists() and not (repo / "models/baseline").exists()
    noise = json.loads((repo / "reports/validation.json").read_text())["label_noise"]
    assert noise["flagged"] and noise["suspicious"][0]["file"] == "data/train.csv"
    print(f"dvc repro stopped at validate after {time.monotonic() - started:.1f} s")


def _poisoned(full: pd.DataFrame) -> pd.DataFrame:
    """Production's rows plus 600 new offensive rows relabelled not-offensive that claim to come
    from the review loop (the attack: `source: feedback` used to switch the rule off)."""
    new = full.iloc[PRODUCTION_ROWS:]
    offensive = new[new.label == "offensive"].head(600)
    poison = offensive.assign(label="not-offensive", source="feedback")
    return pd.concat([full.head(PRODUCTION_ROWS), poison], ignore_index=True)


@pytest.mark.parametrize("forgery", ["no_record", "wrong_key", "relabelled_after_review"])
def test_flipped_rows_claiming_feedback_without_a_valid_review_record_are_scored(
        in_carved, monkeypatch, forgery):
    train = _poisoned(read_split("data/train.csv"))
    poison = train.iloc[PRODUCTION_ROWS:]
    proofs = None
    if forgery == "wrong_key":  # records written by someone without the key
        proofs = _signed(poison, in_carved / "forged.jsonl", monkeypatch, key="x" * 40)
    elif forgery == "relabelled_after_review":  # genuine records, labels edited afterwards
        proofs = _signed(poison.assign(label="offensive"), in_carved / "forged.jsonl",
                         monkeypatch)
    report, findings, row_findings = _label_noise(train, proofs)
    assert report["flagged"] and report["changed_rows"] == 600 and report["reviewed_rows"] == 0
    assert report["unproven_review_rows"] == 600
    assert report["estimate"]["low"] > 0.5, report["estimate"]
    unproven = [f for f in row_findings if f.rule == "feedback_unproven"]
    assert len(unproven) == 600 and all(f.severity == "warn" for f in unproven)
    first = unproven[0]
    lines = Path(first.file).read_text(encoding="utf-8").split("\n")
    assert first.row == PRODUCTION_ROWS + 2 and lines[first.row - 1].startswith(
        f"{poison.id.iloc[0]},")
    assert f"id {poison.id.iloc[0]!r} says source 'feedback'" in first.message
    why = {"no_record": "no review record for this id",
           "wrong_key": "has no valid signature",
           "relabelled_after_review": "label 'not-offensive' is not the reviewed one"}[forgery]
    assert why in first.message


def test_review_records_need_the_key_to_count(in_carved, monkeypatch, tmp_path):
    full = read_split("data/train.csv")
    reviewed = full.iloc[PRODUCTION_ROWS:PRODUCTION_ROWS + 50].assign(source="feedback")
    _signed(reviewed, tmp_path / "provenance.jsonl", monkeypatch)
    without_key = Proofs(tmp_path / "provenance.jsonl", None)
    row = reviewed.iloc[0]
    assert "MODERATION_PROVENANCE_KEY is not set" in without_key.why_unproven(
        row.id, row.text, row.label)
    with_key = Proofs(tmp_path / "provenance.jsonl", KEY.encode())
    assert with_key.why_unproven(row.id, row.text, row.label) is None
    assert with_key.why_unproven(row.id, row.text + " ", row.label) == \
        "the text differs from the reviewed one"
