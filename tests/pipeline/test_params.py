import pytest
import yaml

from pipelines.runtime.params import ParamsError, apply_profile, load_params, parse_params
from tests.conftest import ROOT, pipelines_cli, run


def shipped() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_shipped_params_and_smoke_profile_are_valid(tmp_path):
    params = load_params(ROOT / "params.yaml")
    assert params.positive_label == "offensive"
    target = tmp_path / "params.yaml"
    target.write_text((ROOT / "params.yaml").read_text())
    smoke = apply_profile(ROOT / "profiles/smoke.yaml", target)
    assert smoke.train.init == "random" and smoke.data.max_train_rows == 400
    assert load_params(target) == smoke


def test_unknown_key_is_named():
    raw = shipped()
    raw["train"]["epoch"] = 3
    with pytest.raises(ParamsError, match=r"train\.epoch: unknown key"):
        parse_params(raw)


def test_wrong_type_is_named_with_the_value():
    raw = shipped()
    raw["train"]["batch_size"] = "thirty-two"
    with pytest.raises(ParamsError, match=r"train\.batch_size: .*'thirty-two'"):
        parse_params(raw)


def test_missing_key_is_named():
    raw = shipped()
    del raw["validate"]["severity"]["holdout_leak"]
    with pytest.raises(ParamsError, match=r"validate\.severity\.holdout_leak: required"):
        parse_params(raw)


def test_cli_rejects_bad_params_with_exit_2(fresh_repo):
    raw = yaml.safe_load((fresh_repo / "params.yaml").read_text())
    raw["evaluate"]["colour"] = "blue"
    (fresh_repo / "params.yaml").write_text(yaml.safe_dump(raw))
    result = pipelines_cli(["check-params"], fresh_repo, check=False)
    assert result.returncode == 2
    assert "evaluate.colour: unknown key" in result.stderr


def test_pipeline_stops_on_bad_params_before_training(fresh_repo):
    raw = yaml.safe_load((fresh_repo / "params.yaml").read_text())
    raw["train"]["learning_rate"] = "fast"
    (fresh_repo / "params.yaml").write_text(yaml.safe_dump(raw))
    result = run(["dvc", "repro"], fresh_repo, check=False)
    assert result.returncode != 0
    assert "train.learning_rate" in result.stdout + result.stderr
    assert not (fresh_repo / "models/candidate").exists()
