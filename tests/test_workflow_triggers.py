"""The retrain trigger paths are exactly what dvc.yaml declares, mapped to what git sees."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.ci.rules import load_workflow
from pipelines.ci.triggers import (
    PROMOTION_WRITES,
    TriggerError,
    classify_dep,
    dvc_pointers,
    resolve_stages,
    retrain_trigger_paths,
)
from pipelines.ci.workflows import out_of_sync, write_workflows

ROOT = Path(__file__).resolve().parents[1]


def _scratch_repo(tmp_path: Path) -> Path:
    """The files trigger derivation reads, plus the committed workflows, in a scratch directory."""
    for rel in ("dvc.yaml", "params.yaml", "data.dvc", "models/production.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    return tmp_path


def _add_dep(root: Path, stage: str, dep: str) -> None:
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    dvc["stages"][stage]["deps"].append(dep)
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))


def test_every_declared_dep_is_a_trigger_unless_internal_or_written_by_promotion():
    stages = resolve_stages(ROOT)
    outputs = {o for s in stages for o in s.outs}
    pointers = dvc_pointers(ROOT)
    triggers = set(retrain_trigger_paths(ROOT))
    for stage in stages:
        for dep in stage.deps:
            kind, trigger = classify_dep(dep, outputs, pointers)
            assert kind in {"internal", "promotion"} or trigger in triggers, (stage.name, dep)


def test_data_files_trigger_through_their_pointer_not_their_path():
    triggers = retrain_trigger_paths(ROOT)
    assert "data.dvc" in triggers
    assert not any(p.startswith("data/") for p in triggers)


def test_stage_code_params_and_dvc_yaml_trigger():
    triggers = retrain_trigger_paths(ROOT)
    assert {"params.yaml", "dvc.yaml", "pipelines/stages/train.py", "pipelines/stages/baseline.py",
            "pipelines/stages/evaluate.py"} <= set(triggers)


def test_outputs_lock_file_promotion_files_and_undeclared_code_never_trigger():
    triggers = set(retrain_trigger_paths(ROOT))
    never = {"dvc.lock", "reports/validation.json", "models/candidate", "models/baseline",
             "pipelines/cli.py", ".github/workflows/retrain.yml", *PROMOTION_WRITES}
    assert not triggers & never


def test_committed_retrain_workflow_triggers_on_exactly_the_derived_paths():
    retrain = load_workflow(ROOT / ".github/workflows/retrain.yml")
    assert retrain["on"]["push"]["paths"] == retrain_trigger_paths(ROOT)


def test_a_new_dvc_yaml_dep_missing_from_the_triggers_is_caught(tmp_path):
    root = _scratch_repo(tmp_path)
    assert out_of_sync(root) == []
    _add_dep(root, "train", "config/stopwords.txt")
    problems = out_of_sync(root)
    assert len(problems) == 1
    assert "retrain.yml: differs from the generator; run `make workflows`" in problems[0]
    assert "+      - config/stopwords.txt" in problems[0]
    write_workflows(root)
    assert out_of_sync(root) == []
    paths = load_workflow(root / ".github/workflows/retrain.yml")["on"]["push"]["paths"]
    assert "config/stopwords.txt" in paths


def test_a_dep_inside_a_new_data_pointer_triggers_on_that_pointer(tmp_path):
    root = _scratch_repo(tmp_path)
    (root / "lexicons.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n"
                                       "  path: lexicons\n")
    _add_dep(root, "train", "lexicons/slurs.txt")
    triggers = retrain_trigger_paths(root)
    assert "lexicons.dvc" in triggers and "lexicons/slurs.txt" not in triggers


def test_a_git_tracked_directory_dep_triggers_on_everything_under_it(tmp_path):
    root = _scratch_repo(tmp_path)
    (root / "config").mkdir()
    _add_dep(root, "train", "config")
    assert "config/**" in retrain_trigger_paths(root)


def _write_pipeline(root: Path, dvc_yaml: str, **files: str) -> None:
    (root / "params.yaml").write_text("data: {train_file: data/t.csv}\nsizes: [s, m]\n")
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "dvc.yaml").write_text(dvc_yaml)


def test_foreach_expands_to_one_stage_per_item_with_its_deps(tmp_path):
    _write_pipeline(tmp_path, """
stages:
  prep:
    foreach: {en: english, de: german}
    do:
      cmd: prep ${key}
      deps: ['lang/${item}.txt', '${data.train_file}']
      outs: ['prep/${key}']
""")
    stages = {s.name: s for s in resolve_stages(tmp_path)}
    assert set(stages) == {"prep@en", "prep@de"}
    assert stages["prep@de"].deps == ("lang/german.txt", "data/t.csv")
    assert retrain_trigger_paths(tmp_path) == [
        "data/t.csv", "dvc.yaml", "lang/english.txt", "lang/german.txt", "params.yaml"]


def test_matrix_expands_every_combination_and_its_params_file_triggers(tmp_path):
    _write_pipeline(tmp_path, """
stages:
  fit:
    matrix: {size: '${sizes}', seed: [1, 2]}
    cmd: fit
    deps: ['fit_${item.size}.py']
    params: [{configs/fit.yaml: [lr]}]
    outs: ['out/${item.size}-${item.seed}']
""")
    stages = {s.name: s for s in resolve_stages(tmp_path)}
    assert set(stages) == {"fit@s-1", "fit@s-2", "fit@m-1", "fit@m-2"}
    assert stages["fit@m-2"].outs == ("out/m-2",)
    assert retrain_trigger_paths(tmp_path) == [
        "configs/fit.yaml", "dvc.yaml", "fit_m.py", "fit_s.py", "params.yaml"]


def test_values_from_a_vars_file_resolve_deps_and_the_vars_file_triggers(tmp_path):
    _write_pipeline(tmp_path, """
vars:
  - tokenizer.yaml
  - lexicon: lex/slurs.txt
stages:
  train:
    cmd: train
    deps: ['${tokenizer.vocab}', '${lexicon}', prep/en]
""", **{"tokenizer.yaml": "tokenizer: {vocab: tok/vocab.txt}\n"})
    assert resolve_stages(tmp_path)[0].deps == ("tok/vocab.txt", "lex/slurs.txt", "prep/en")
    assert {"tok/vocab.txt", "lex/slurs.txt", "tokenizer.yaml"} <= set(
        retrain_trigger_paths(tmp_path))


def test_an_undefined_interpolation_names_the_stage_field_and_the_key(tmp_path):
    _write_pipeline(tmp_path, "stages:\n  train:\n    cmd: x\n    deps: ['${data.nope}']\n")
    with pytest.raises(TriggerError, match=r"stages\.train\.deps.*data\.nope"):
        resolve_stages(tmp_path)


def test_a_missing_vars_file_is_a_clear_error(tmp_path):
    _write_pipeline(tmp_path, "vars: [gone.yaml]\nstages:\n  train:\n    cmd: x\n")
    with pytest.raises(TriggerError, match="gone.yaml' does not exist"):
        retrain_trigger_paths(tmp_path)


def test_a_missing_dvc_yaml_is_a_clear_error(tmp_path):
    with pytest.raises(TriggerError, match="dvc.yaml: not found"):
        retrain_trigger_paths(tmp_path)


def test_triggers_cli_lists_the_paths_and_why_declared_deps_are_left_out():
    from typer.testing import CliRunner

    from pipelines.cli import app

    result = CliRunner().invoke(app, ["workflows", "triggers", "--root", str(ROOT)])
    assert result.exit_code == 0, result.output
    assert "  data.dvc\n" in result.output
    assert "models/production.yaml (written by a promotion)" in result.output
    assert "reports/validation.json (produced by a stage)" in result.output
