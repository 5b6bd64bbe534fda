import sys

import pandas as pd
import yaml

from pipelines.core.data import COLUMNS, import_tweeteval, read_split
from tests.conftest import pipelines_cli, run


def test_bundled_data_is_tidy_with_a_disjoint_holdout(base_repo):
    train = read_split(base_repo / "data/train.csv")
    holdout = read_split(base_repo / "data/holdout.csv")
    assert list(train.columns) == COLUMNS == list(holdout.columns)
    assert set(train.label) == set(holdout.label) == {"not-offensive", "offensive"}
    assert not set(train.text) & set(holdout.text)
    assert train.id.is_unique and holdout.id.is_unique


def test_missing_pointer_says_how_to_fix(fresh_repo):
    (fresh_repo / "data.dvc").unlink()
    result = pipelines_cli(["data", "pull"], fresh_repo, check=False)
    assert result.returncode == 1
    assert "data.dvc: not found" in result.stderr and "dvc add data" in result.stderr


def test_unresolvable_pointer_names_the_version_and_the_fix(fresh_repo):
    pointer = yaml.safe_load((fresh_repo / "data.dvc").read_text())
    pointer["outs"][0]["md5"] = "0123456789abcdef0123456789abcdef.dir"
    (fresh_repo / "data.dvc").write_text(yaml.safe_dump(pointer))
    result = pipelines_cli(["data", "pull"], fresh_repo, check=False)
    assert result.returncode == 1
    assert "cannot resolve data version 0123456789abcdef0123456789abcdef" in result.stderr
    assert "dvc push" in result.stderr


def test_corrupt_pointer_says_how_to_restore(fresh_repo):
    (fresh_repo / "data.dvc").write_text("just: text\n")
    result = pipelines_cli(["data", "pull"], fresh_repo, check=False)
    assert result.returncode == 1
    assert "not a DVC pointer" in result.stderr and "git checkout -- data.dvc" in result.stderr


def test_fresh_copy_resolves_data_from_the_in_repo_remote(fresh_repo):
    import shutil

    shutil.rmtree(fresh_repo / "data")
    shutil.rmtree(fresh_repo / ".dvc/cache", ignore_errors=True)
    result = run([sys.executable, "-m", "pipelines", "data", "pull"], fresh_repo)
    assert "resolved to version" in result.stdout
    assert len(read_split(fresh_repo / "data/train.csv")) == 11782


def test_import_drops_leaks_conflicts_and_duplicates(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "mapping.txt").write_text("0\tnot-offensive\n1\toffensive\n")
    train = ["hello there", "Hello there!", "you are awful", "seen in holdout", "mixed", "MIXED"]
    labels = ["0", "0", "1", "0", "0", "1"]
    (src / "train_text.txt").write_text("\n".join(train) + "\n")
    (src / "train_labels.txt").write_text("\n".join(labels) + "\n")
    (src / "val_text.txt").write_text("seen in holdout\nanother\n")
    (src / "val_labels.txt").write_text("0\n1\n")
    counts = import_tweeteval(src, tmp_path / "out")
    out = pd.read_csv(tmp_path / "out/train.csv")
    assert list(out.text) == ["hello there", "you are awful"]
    assert counts["dropped_holdout_leak"] == 1
    assert counts["dropped_conflicting"] == 2
    assert counts["dropped_duplicates"] == 1
    assert list(pd.read_csv(tmp_path / "out/holdout.csv").label) == ["not-offensive", "offensive"]


def test_a_past_data_version_is_read_by_its_md5_from_the_remote_without_a_checkout(fresh_repo):
    import shutil

    import pytest

    from pipelines.core.data import DataError, dataset_hash
    from pipelines.core.versions import read_tracked_file

    digest = dataset_hash(fresh_repo / "data.dvc")
    expected = (fresh_repo / "data/holdout.csv").read_bytes()
    shutil.rmtree(fresh_repo / ".dvc/cache", ignore_errors=True)
    shutil.rmtree(fresh_repo / "data")
    assert read_tracked_file(digest, "holdout.csv", fresh_repo) == expected
    with pytest.raises(DataError, match=r"has no test\.csv \(it has \['holdout.csv', 'train"):
        read_tracked_file(digest, "test.csv", fresh_repo)
    with pytest.raises(DataError, match="0123456789abcdef0123456789abcdef is in neither"):
        read_tracked_file("0123456789abcdef0123456789abcdef", "train.csv", fresh_repo)


def test_remote_objects_are_the_manifest_and_every_file_of_the_tracked_directory(fresh_repo):
    import json

    from pipelines.core.versions import remote_objects

    objects = remote_objects("data.dvc", fresh_repo)
    assert all(p.is_file() and p.is_relative_to(fresh_repo / ".dvc/storage") for p in objects)
    manifest = json.loads(objects[0].read_text())
    assert sorted(e["relpath"] for e in manifest) == ["holdout.csv", "train.csv"]
    assert len(objects) == 3


def test_edited_data_not_added_to_dvc_names_the_cause_and_both_ways_out(fresh_repo):
    # `make compare` and `make run` start with this pull (the `data` target)
    with (fresh_repo / "data/train.csv").open("a") as f:
        f.write("train-new,a text I just added by hand,offensive,manual\n")
    result = run([sys.executable, "-m", "pipelines", "data", "pull"], fresh_repo, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "data/ has changes that are not saved as a data version" in result.stderr
    assert "`dvc add data`" in result.stderr and "dvc checkout --force data.dvc" in result.stderr
    assert "neither in the local cache nor in the DVC remote" not in result.stderr
    run(["dvc", "checkout", "--force", "-q", "data.dvc"], fresh_repo)  # way out 1: discard
    pipelines_cli(["data", "pull"], fresh_repo)
    assert "a text I just added" not in (fresh_repo / "data/train.csv").read_text()
    with (fresh_repo / "data/train.csv").open("a") as f:
        f.write("train-new,a text I just added by hand,offensive,manual\n")
    run(["dvc", "add", "-q", "data"], fresh_repo)  # way out 2: make it the new version
    assert "resolved to version" in pipelines_cli(["data", "pull"],
                                                  fresh_repo).stdout


def test_import_removes_control_characters_validate_would_reject(tmp_path):
    # TweetEval hate carries U+009D and U+0081 (mis-decoded bytes) in train and validation texts.
    src = tmp_path / "src"
    src.mkdir()
    (src / "mapping.txt").write_text("0\tnot-hate\n1\thate\n")
    (src / "train_text.txt").write_text("so \u009dtrue\nplain\n", encoding="utf-8")
    (src / "train_labels.txt").write_text("0\n1\n")
    (src / "val_text.txt").write_text("tab\tand \u0081this\n", encoding="utf-8")
    (src / "val_labels.txt").write_text("1\n")
    import_tweeteval(src, tmp_path / "out")
    assert list(read_split(tmp_path / "out/train.csv").text) == ["so true", "plain"]
    assert list(read_split(tmp_path / "out/holdout.csv").text) == ["tab\tand this"]
