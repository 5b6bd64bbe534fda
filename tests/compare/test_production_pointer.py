"""The production pointer: missing pieces are clear errors, `version: null` is the bootstrap path,
and promote rewrites the pointer and its DVC-tracked weights."""

from __future__ import annotations

import json
import shutil
import sys

import pandas as pd
import pytest
import yaml

from pipelines.core.data import read_split, write_split
from pipelines.core.production import (
    ProductionError,
    promote,
    read_dataset_file,
    read_pointer,
)
from pipelines.stages.compare import compare_to_production
from tests.compare.conftest import sh


def test_missing_pointer_is_a_clear_error_and_writes_nothing(workspace, tmp_path):
    out = tmp_path / "out"
    with workspace.inside(), pytest.raises(ProductionError, match="production pointer not found"):
        compare_to_production(workspace.params, workspace.models["production"], out,
                              pointer=tmp_path / "absent.yaml")
    assert not out.exists()


def test_missing_weights_name_the_dvc_pull_that_fetches_them(workspace, tmp_path):
    out = tmp_path / "out"
    with workspace.inside(), pytest.raises(ProductionError) as err:
        compare_to_production(workspace.params, workspace.models["production"], out,
                              weights=tmp_path / "no-weights")
    assert "dvc pull" in str(err.value) and "are missing" in str(err.value)
    assert not out.exists()


def test_weights_of_another_version_are_refused(workspace, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(workspace.models["production"], other)
    meta = json.loads((other / "metadata.json").read_text())
    meta["version"] = "baseline-00000000-00000000"
    (other / "metadata.json").write_text(json.dumps(meta))
    with workspace.inside(), pytest.raises(ProductionError, match="but the pointer names"):
        compare_to_production(workspace.params, other, tmp_path / "out", weights=other)


def test_a_changed_holdout_is_refused_not_silently_compared(workspace, tmp_path):
    with workspace.inside():
        frame = read_split(workspace.params.data.holdout_file)
        frame.loc[0, "text"] = frame.loc[0, "text"] + " edited"
        write_split(frame, tmp_path / "holdout.csv")
    params = workspace.params.model_copy(update={"data": workspace.params.data.model_copy(
        update={"holdout_file": str(tmp_path / "holdout.csv")})})
    with workspace.inside(), pytest.raises(ProductionError, match="changed since production"):
        compare_to_production(params, workspace.models["production"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_reports_pointer_errors_with_exit_code_one(workspace, tmp_path):
    pointer = workspace.root / "models" / "production.yaml"
    saved = pointer.read_text()
    try:
        pointer.write_text("version: [unclosed\n")
        result = sh([sys.executable, "-m", "pipelines", "compare",
                     str(workspace.models["production"]), "--out", str(tmp_path / "o")],
                    workspace.root, check=False)
    finally:
        pointer.write_text(saved)
    assert result.returncode == 1
    assert "models/production.yaml: not valid YAML" in result.stderr


def test_version_null_is_the_bootstrap_path_judged_on_floors_only(workspace, tmp_path):
    pointer = tmp_path / "production.yaml"
    pointer.write_text("version: null\n")
    out = tmp_path / "out"
    with workspace.inside():
        assert read_pointer(pointer) is None
        decision = compare_to_production(workspace.params, workspace.models["production"], out,
                                         pointer=pointer)
    assert decision.bootstrap is True
    assert decision.verdict == "promote"
    assert {r.check for r in decision.reasons} >= {"floor.macro_f1", "floor.roc_auc",
                                                         "bootstrap"}
    assert not any(r.check.startswith("non_inferiority") for r in decision.reasons)
    assert "judged on absolute floors only" in (out / "pr_body.md").read_text().splitlines()[0]


def test_bootstrap_candidate_below_the_floor_is_rejected(workspace, tmp_path):
    pointer = tmp_path / "production.yaml"
    pointer.write_text("version: null\n")
    strict = workspace.params_with(gate={"floors": {"macro_f1": 0.99}})
    with workspace.inside():
        decision = compare_to_production(strict, workspace.models["production"],
                                         tmp_path / "out", pointer=pointer)
    assert decision.verdict == "reject"
    assert decision.failed == ["floor.macro_f1"]


def test_promote_rewrites_pointer_and_dvc_tracked_weights(workspace):
    candidate = workspace.train("same_data_other_c", C=2.0)
    with workspace.inside():
        from pipelines.stages.evaluate import evaluate

        evaluate(workspace.params, "promoted", candidate, "reports/metrics/promoted.json",
                 "reports/plots/promoted")
        record = promote(candidate, "reports/metrics/promoted.json",
                         read_pointer().holdout_md5, bento_tag="moderation:abc",
                         image="registry.local/moderation:abc",
                         pointer="promoted/production.yaml", weights="promoted/production")
        pointer = yaml.safe_load((workspace.root / "promoted/production.yaml").read_text())
        dvc_file = yaml.safe_load((workspace.root / "promoted/production.dvc").read_text())
        decision = compare_to_production(workspace.params, candidate, "out/promoted",
                                         pointer="promoted/production.yaml",
                                         weights="promoted/production")
    candidate_meta = json.loads((candidate / "metadata.json").read_text())
    assert pointer == record.model_dump(mode="json")
    assert pointer["version"] == candidate_meta["version"]
    assert pointer["dataset"] == candidate_meta["dataset"]
    assert pointer["metrics"]["macro_f1"] > 0 and "slices" in pointer["metrics"]
    assert (pointer["bento_tag"], pointer["image"]) == ("moderation:abc",
                                                          "registry.local/moderation:abc")
    assert dvc_file["outs"][0]["path"] == "production"
    # The promoted model compared with itself: identical predictions, no change.
    assert decision.verdict == "no significant change"
    assert decision.production_version == candidate_meta["version"]


def test_promote_refuses_metrics_of_another_model(workspace, tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"model_version": "someone-else"}))
    with workspace.inside(), pytest.raises(ProductionError, match="evaluate the model first"):
        promote(workspace.models["production"], metrics, "0" * 32, pointer=tmp_path / "p.yaml",
                weights=tmp_path / "w", track=False)
    assert not (tmp_path / "p.yaml").exists()


def test_a_past_data_version_is_read_through_dvc_pulling_what_the_cache_lacks(tmp_path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    sh(["git", "init", "-q"], repo)
    sh(["dvc", "init", "-q"], repo)
    sh(["dvc", "remote", "add", "-q", "-d", "origin", str(tmp_path / "remote")], repo)
    rows = pd.DataFrame({"id": ["a"], "text": ["hello"], "label": ["offensive"], "source": ["x"]})
    write_split(rows, repo / "data/train.csv")
    sh(["dvc", "add", "-q", "data"], repo)
    sh(["dvc", "push", "-q"], repo)
    md5 = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"].removesuffix(".dir")
    shutil.rmtree(repo / ".dvc/cache")
    assert read_dataset_file(md5, "train.csv", repo).to_dict("records") == \
        rows.to_dict("records")
    with pytest.raises(ProductionError, match="has no holdout.csv"):
        read_dataset_file(md5, "holdout.csv", repo)
    with pytest.raises(ProductionError, match="in neither the DVC cache nor the remote"):
        read_dataset_file("0" * 32, "train.csv", repo)
