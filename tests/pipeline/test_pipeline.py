"""The real DVC pipeline end to end on the smoke profile."""

import json

import numpy as np
import yaml

from pipelines.analysis.behaviour import EVASIONS
from pipelines.core.data import dataset_hash
from pipelines.runtime.classifier import load_classifier, predict
from tests.conftest import run


def test_pipeline_writes_models_metrics_and_plots(smoke_repo):
    for name in ("candidate", "baseline"):
        metrics = json.loads((smoke_repo / f"reports/metrics/{name}.json").read_text())
        assert metrics["n"] == 200
        assert 0.0 <= metrics["macro_f1"] <= 1.0
        assert set(metrics["per_class"]) == {"not-offensive", "offensive"}
        assert sum(map(sum, metrics["confusion_matrix"])) == 200
        assert {"mention", "url", "hashtag", "emoji", "very_short", "shouting"} <= set(
            metrics["slices"])
        assert "directional_insult" in metrics["behaviour"]
        assert "invariance_add_mention" in metrics["behaviour"]
        # The evasion suite: every disguise, on the offensive texts the model catches.
        assert {f"evasion_{name}" for name in EVASIONS} <= set(metrics["behaviour"])
        for plot in ("predictions.csv", "pr_curve.csv", "confusion.png", "pr_curve.png"):
            assert (smoke_repo / f"reports/plots/{name}/{plot}").stat().st_size > 0


def test_model_metadata_records_dataset_hash_params_and_commit(smoke_repo):
    for name, kind in (("candidate", "transformer"), ("baseline", "baseline")):
        meta = json.loads((smoke_repo / f"models/{name}/metadata.json").read_text())
        assert meta["kind"] == kind
        assert meta["dataset"]["md5"] == dataset_hash(smoke_repo / "data.dvc")
        assert meta["dataset"]["train_rows"] == 400
        assert len(meta["git_commit"]) == 40
        assert meta["version"].startswith(f"{kind}-{meta['dataset']['md5'][:8]}-")
    assert json.loads((smoke_repo / "models/candidate/metadata.json").read_text())[
        "params"]["init"] == "random"


def test_saved_models_load_and_score_texts(smoke_repo):
    for name in ("candidate", "baseline"):
        clf = load_classifier(smoke_repo / f"models/{name}")
        proba = clf.predict_proba(["you are wonderful", "@user shut up", ""])
        assert proba.shape == (3, 2)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
        out = predict(clf, ["hello"])
        assert out[0]["label"] in clf.labels and set(out[0]["scores"]) == set(clf.labels)


def test_repro_with_nothing_changed_runs_no_stage(smoke_repo):
    result = run(["dvc", "repro"], smoke_repo)
    assert "Running stage" not in result.stdout
    assert "up to date" in result.stdout


def test_evaluation_param_reruns_only_evaluation(smoke_repo, tmp_path):
    import shutil

    repo = shutil.copytree(smoke_repo, tmp_path / "repo", symlinks=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["behaviour"]["sample_size"] = 40
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["dvc", "repro"], repo)
    ran = {line.split("'")[1] for line in result.stdout.splitlines()
           if line.startswith("Running stage")}
    # compare re-scores both models with the same behavioural checks, so it reruns too.
    assert ran == {"evaluate@baseline", "evaluate@candidate", "compare"}


def test_training_is_reproducible_with_the_same_seed(smoke_repo, tmp_path):
    run(["python", "-m", "pipelines", "train-baseline", "--out", str(tmp_path / "again")],
        smoke_repo)
    first = load_classifier(smoke_repo / "models/baseline")
    again = load_classifier(tmp_path / "again")
    texts = ["@user what a day", "this is disgusting trash", "lovely weather"]
    np.testing.assert_allclose(first.predict_proba(texts), again.predict_proba(texts), atol=1e-6)


def test_candidate_reproduces_the_decision_it_picked_on_dev(smoke_repo):
    """Loaded back, the candidate (blend weight and threshold applied) scores its dev rows as
    the train stage recorded, and carries the TF-IDF model exactly when the blend uses it."""
    from pipelines.analysis.metrics import macro_f1
    from pipelines.core.data import read_split
    from pipelines.stages.train import dev_split

    meta = json.loads((smoke_repo / "models/candidate/metadata.json").read_text())
    params = yaml.safe_load((smoke_repo / "params.yaml").read_text())
    decision = meta["decision"]
    assert decision == meta["dev"]["decision"]
    assert (smoke_repo / "models/candidate/tfidf.joblib").exists() == (decision["tfidf_weight"] > 0)
    frame = read_split(smoke_repo / params["data"]["train_file"],
                       params["data"]["max_train_rows"])
    labels = params["data"]["labels"]
    y = np.array([labels.index(label) for label in frame.label])
    _, dev = dev_split(list(y), params["train"]["dev_fraction"], params["train"]["seed"])
    clf = load_classifier(smoke_repo / "models/candidate")
    predicted = clf.predict_proba([frame.text.iloc[i] for i in dev]).argmax(axis=1)
    assert abs(macro_f1(y[dev], predicted, 2) - meta["dev"]["macro_f1_with_decision"]) < 0.01
