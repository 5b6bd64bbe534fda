"""The Bento build's failure path, without a trained model: the build runs in its own interpreter
(BentoML fixes its store at first use in a process) and a failure there is a PipelineError."""

from __future__ import annotations

import json
import shutil

import pytest

from service.bento import BentoBuildError, build_bento
from tests.conftest import ROOT
from tests.pipeline.test_records import BASELINE


def test_a_failed_build_is_an_error_naming_the_model_and_the_store_it_was_imported_into(
        tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "metadata.json").write_text(json.dumps(BASELINE), encoding="utf-8")
    root = tmp_path / "repo"  # no bentofile.yaml: the import succeeds and the build fails
    (root / "service").mkdir(parents=True)
    shutil.copy2(ROOT / "requirements.lock", root / "requirements.lock")
    home = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    with pytest.raises(BentoBuildError, match="bentofile") as failed:
        build_bento(model, root=root)
    assert str(model) in str(failed.value) and str(home) in str(failed.value)
    # the child used the store BENTOML_HOME names now, whatever this process used before
    [imported] = (home / "models/moderation-model").glob("*/metadata.json")
    assert json.loads(imported.read_text(encoding="utf-8")) == BASELINE
