"""The label_noise rule on a carved history: production learned the first rows of the bundled
training split, the new data version adds the rest (the same source), with labels flipped on
purpose. The flipped share is known, so each estimate is checked against it."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.core.data import read_split, write_split
from pipelines.core.metadata import read_metadata
from pipelines.core.params import load_params
from pipelines.stages.label_noise import check_label_noise
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
    metadata = read_metadata(repo / "models/production")
    record = {k: metadata[k] for k in ("version", "kind", "dataset", "params", "git_commit")}
    (repo / "models/production.yaml").write_text(yaml.safe_dump(
        record | {"holdout_md5": metadata["holdout_md5"], "metrics": {}, "bento_tag": None,
                  "image": None}))
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


def _label_noise(repo: Path, train: pd.DataFrame) -> tuple[dict, list[tuple]]:
    findings = []
    report = check_label_noise(load_params(repo / "params.yaml"), train,
                               read_split(repo / "data/holdout.csv"),
                               Path("models/production.yaml"),
                               lambda *finding: findings.append(finding))
    return report, findings


def _assert_within(found: dict, true_share: float) -> None:
    assert found["low"] <= true_share <= found["high"], (true_share, found)


def _true_share(flipped: int, report: dict) -> float:
    return flipped / report["changed_rows"]


def test_clean_new_rows_from_the_same_source_pass(in_carved):
    report, findings = _label_noise(in_carved, read_split("data/train.csv"))
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
    report, findings = _label_noise(in_carved, train)
    assert report["flagged"] and report["estimate"]["scorer"] == "out_of_fold"
    _assert_within(report["estimate"], _true_share(len(flipped), report))
    [(rule, file, row, message)] = findings
    assert (rule, file, row) == ("label_noise", "data/train.csv", None)
    top = report["suspicious"][:20]
    assert f"data/train.csv:{top[0]['line']}" in message
    flipped_lines = {int(i) + 2 for i in flipped}
    assert np.mean([row["line"] in flipped_lines for row in top]) >= 0.5


def test_pr_body_shows_the_estimate_and_the_worst_rows(in_carved, tmp_path):
    from pipelines.stages.compare import label_noise_section
    from pipelines.stages.pr_body import label_noise_lines

    train, _ = _random_flips(0.30)
    report, _ = _label_noise(in_carved, train)
    validation = tmp_path / "validation.json"
    validation.write_text(json.dumps({"dataset_md5": "abc", "label_noise": report}))
    body = "\n".join(label_noise_lines(label_noise_section(validation, "abc", False)))
    estimate = report["estimate"]
    assert f"An estimated **{estimate['share']:.1%} [{estimate['low']:.1%}, " in body
    assert "**above the limit** of 5.0%" in body
    top = report["suspicious"][0]
    assert f"| data/train.csv:{top['line']} | {top['id']} | {top['label']} |" in body
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
    report, findings = _label_noise(in_carved, _flip(full, flipped))
    assert "out_of_fold/hashtag" in report["flagged_by"] and len(findings) == 1
    assert "by slice: hashtag" in findings[0][3]
    in_slice = report["scorers"]["out_of_fold"]["slices"]["hashtag"]
    _assert_within(in_slice, len(flipped) / has_tag[_new_rows(full)].sum())
    _assert_within(report["estimate"], _true_share(len(flipped), report))


def test_feedback_export_of_genuine_corrections_is_not_flagged(in_carved):
    from pipelines.core.classifier import load_classifier

    full = read_split("data/train.csv")
    served = full.iloc[PRODUCTION_ROWS:]
    doubt = np.abs(load_classifier("models/production").predict_proba(list(served.text))[:, 1]
                   - 0.5)
    # The review UI lists the least certain predictions first; reviewers give the true label.
    reviewed = served.iloc[np.argsort(doubt)[:600]].assign(source="feedback")
    reviewed["id"] = ["feedback-" + hashlib.sha256(t.encode()).hexdigest()[:12]
                      for t in reviewed.text]
    train = pd.concat([full.head(PRODUCTION_ROWS), reviewed], ignore_index=True)
    report, findings = _label_noise(in_carved, train)
    assert not report["flagged"] and findings == []
    assert report["reviewed_rows"] == 600 and report["changed_rows"] == 0


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
