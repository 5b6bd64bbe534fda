"""The drift workflow's steps: sample the logged predictions, compare their texts with production's
training data (input drift) and their labels and scores with the serving model's own on the
holdout (prediction drift), and open an issue on drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from pipelines.analysis.drift_measures import HeldOutVocabulary
from pipelines.core.data import DATA_POINTER, read_split
from pipelines.core.markdown import code
from pipelines.core.production import production_training_rows, read_pointer
from pipelines.release.github import open_or_comment_issue
from pipelines.runtime.classifier import load_classifier, predict
from pipelines.runtime.errors import PipelineError
from pipelines.runtime.metadata import METADATA_FILE, is_model_dir
from pipelines.runtime.params import Params
from service.kept_text import UNBIASED_REASONS
from service.predlog import backend_of, make_engine, predictions, prepare_database

OUT_DIR = Path("reports/drift")
SAMPLE = "current.csv"
ISSUE_LABEL = "drift"
SERVING_MODEL = Path("models/production")
# Written by benchmarks/drift_calibration.py; the summary's footer quotes it.
CALIBRATION = Path("benchmarks/drift_calibration.json")
CALIBRATION_COMMAND = "python benchmarks/drift_calibration.py"
PREDICTION_COLUMNS = ("flagged", "score")
SAMPLE_COLUMNS = ("text", "label", "score", "model_version", "created_at")


class DriftError(PipelineError):
    """The drift check cannot run; the message says what is missing."""


def _positive_score(scores: Any, positive: str, row: int) -> float:
    scores = json.loads(scores) if isinstance(scores, str) else scores  # SQLite text, PG JSONB
    if positive not in scores:
        raise DriftError(f"prediction log row {row}: scores {sorted(scores)} lack the positive "
                         f"label {positive!r} (data.labels): the log is from another label set")
    return float(scores[positive])


def sample_predictions(db_url: str, rows: int, positive: str, out: Path) -> Path:
    """The newest `rows` logged predictions that kept their text as an unbiased sample of traffic
    (`log_text: text`, or the random share of `sample`: flagged and uncertain texts would skew
    it), as text,label,score (the serving model's label and its score for
    `positive`),model_version,created_at."""
    backend_of(db_url)  # a bad URL fails here, naming it
    prepare_database(db_url)  # an empty SQLite log reads as empty; PostgreSQL must be migrated
    p = predictions.c
    query = (sa.select(p.id, p.text, p.label, p.scores, p.model_version, p.created_at)
             .where(p.text.is_not(None), p.text_kept.in_(UNBIASED_REASONS))
             .order_by(p.id.desc()).limit(int(rows)))
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            records = conn.execute(query).all()
    finally:
        engine.dispose()
    if not records:
        raise DriftError("the prediction log has no predictions with their text kept as a "
                         "random sample (serve.log_text: hash keeps only digests, which a drift "
                         "report cannot read; `sample` keeps a share: log_text_share > 0)")
    frame = pd.DataFrame([(text, label, _positive_score(scores, positive, row_id), version,
                           str(created)) for row_id, text, label, scores, version, created
                          in records], columns=list(SAMPLE_COLUMNS))
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return out


def read_sample(path: Path) -> pd.DataFrame:
    """The sample written by `drift sample`, checked for the columns the report needs."""
    if not path.is_file():
        raise DriftError(f"{path} not found: run `python -m pipelines drift sample` first")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in SAMPLE_COLUMNS if c not in frame.columns]
    if missing:
        raise DriftError(f"{path}: missing column(s) {missing}; expected {list(SAMPLE_COLUMNS)} "
                         "(rerun `python -m pipelines drift sample`)")
    if frame.empty:
        raise DriftError(f"{path}: no rows")
    return frame


def input_drift(params: Params, training: pd.DataFrame, current: pd.DataFrame, out_dir: Path,
                significance: float) -> dict[str, Any]:
    """Text descriptors of the traffic against a sample of production's training data."""
    # Lazy: Evidently takes seconds to import, and the CLI loads this module for every command.
    from pipelines.analysis.evidently_reports import describe_texts, drift_report, text_thresholds

    compare, slices = params.compare, params.evaluate.slices
    vocabulary = HeldOutVocabulary(training.text)
    reference = training.sample(min(compare.drift_sample_rows, len(training)),
                                random_state=compare.seed)
    return drift_report(describe_texts(reference.text, vocabulary, slices),
                        describe_texts(current.text, vocabulary, slices),
                        text_thresholds(compare, slices), significance, out_dir, "drift")


def holdout_predictions(params: Params, model_dir: Path) -> tuple[str, pd.DataFrame]:
    """(version, flagged and score per holdout text) of the model in model_dir."""
    if not is_model_dir(model_dir):
        raise DriftError(f"{model_dir}: no model there ({METADATA_FILE} missing). Fetch "
                         "production's weights with `make production`, or pass --model with the "
                         "directory of the model that serves the logged traffic")
    classifier = load_classifier(model_dir)
    holdout = read_split(params.data.holdout_file, params.data.max_holdout_rows)
    return classifier.version, prediction_columns(
        predict(classifier, list(holdout.text)), params.data.labels[-1])


def prediction_columns(predictions: list[dict[str, Any]], positive: str) -> pd.DataFrame:
    """`flagged` (1 when the label is the positive one) and `score` (its probability)."""
    return pd.DataFrame({"flagged": [float(p["label"] == positive) for p in predictions],
                         "score": [float(p["scores"][positive]) for p in predictions]})


def prediction_drift(params: Params, current: pd.DataFrame,
                     holdout: tuple[str, pd.DataFrame], model_dir: Path, out_dir: Path,
                     significance: float) -> dict[str, Any]:
    """Flagged share and scores of the traffic against the serving model's own on the holdout."""
    from pipelines.analysis.evidently_reports import drift_report

    version, reference = holdout
    served = current[current.model_version == version]
    if served.empty:
        return {"skipped": f"no logged prediction in the sample is from {version} (the model in "
                           f"{model_dir}); the sample was served by "
                           f"{', '.join(sorted(current.model_version.unique()))}: pass --model "
                           "with that model's directory"}
    positive = params.data.labels[-1]
    logged = pd.DataFrame({"flagged": (served.label == positive).to_numpy(dtype=float),
                           "score": served.score.astype(float).to_numpy()})
    threshold = params.compare.drift_min_label_effect
    result = drift_report(reference, logged, dict.fromkeys(PREDICTION_COLUMNS, threshold),
                          significance, out_dir, "prediction_drift")
    return {"model_version": version, **result}


def significance_levels(params: Params) -> tuple[float, float]:
    """compare.drift_significance split between the input and the prediction columns, so that
    it is one family-wise level over every column of both reports."""
    from pipelines.analysis.evidently_reports import text_columns

    inputs = len(text_columns(params.evaluate.slices))
    per_column = params.compare.drift_significance / (inputs + len(PREDICTION_COLUMNS))
    return per_column * inputs, per_column * len(PREDICTION_COLUMNS)


def drift_against_production(params: Params, current_csv: Path, out_dir: Path = OUT_DIR,
                             model_dir: Path = SERVING_MODEL) -> dict[str, Any]:
    """Input and prediction drift of the sampled predictions; writes summary.json and .md."""
    current = read_sample(current_csv)
    production = read_pointer()
    if production is None:
        raise DriftError("models/production.yaml has version: null: no production model, so no "
                         "training data to compare the logged predictions with")
    training = production_training_rows(production.dataset, params.data.train_file,
                                        DATA_POINTER)
    holdout = holdout_predictions(params, model_dir)  # before any report is written
    out_dir.mkdir(parents=True, exist_ok=True)
    input_level, prediction_level = significance_levels(params)
    inputs = input_drift(params, training, current, out_dir, input_level)
    predictions = prediction_drift(params, current, holdout, model_dir, out_dir,
                                   prediction_level)
    drifted = inputs["drifted"] + predictions.get("drifted", [])
    summary = {"production_version": production.version,
               "served_versions": sorted(current.model_version.unique()),
               "flagged": bool(drifted), "drifted": drifted, "input": inputs,
               "prediction": predictions,
               "calibration": calibration_note(params)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out_dir / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
    return summary


def calibration_note(params: Params, path: Path = CALIBRATION) -> str:
    """The measured false-alarm and detection rates of these rules, or why there are none."""
    if not path.is_file():
        return f"False-alarm and detection rates not measured: run `{CALIBRATION_COMMAND}`."
    measured = json.loads(path.read_text(encoding="utf-8"))
    compare = params.compare
    settings = {"rows": compare.drift_sample_rows, "min_effect": compare.drift_min_effect,
                "min_label_effect": compare.drift_min_label_effect,
                "significance": compare.drift_significance}
    if measured["settings"] != settings:
        return (f"The rates in {path} were measured with {measured['settings']}, not these "
                f"settings ({settings}): rerun `{CALIBRATION_COMMAND}`.")
    fa, det = measured["false_alarms"], measured["detection"]
    return (f"These rules, on samples of {settings['rows']} rows, raised a false alarm on "
            f"{fa['rate']:.1%} of {fa['samples']} in-distribution samples (at most "
            f"{fa['ci95'][1]:.1%} at 95 % confidence) and detected {det['rate']:.1%} of "
            f"{det['samples']} shifted ones (at least {det['ci95'][0]:.1%}; shifts: "
            f"{', '.join(det['shifts'])}); measured by `{CALIBRATION_COMMAND}`.")


def _table(report: dict[str, Any]) -> list[str]:
    lines = ["| column | reference mean | current mean | effect | min effect | K-S p | drifted |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, c in report["columns"].items():
        lines.append(f"| {name} | {c['reference_mean']} | {c['current_mean']} | {c['value']} | "
                     f"{c['threshold']} | {c['p_value']} | "
                     f"{'**yes**' if c['drifted'] else 'no'} |")
    return lines


def summary_markdown(summary: dict[str, Any]) -> str:
    """The issue body: what drifted, by how much, what to do, and how far to trust it."""
    inputs, predictions = summary["input"], summary["prediction"]
    head = (f"## Drift detected in {', '.join(summary['drifted'])}" if summary["flagged"]
            else "## No drift")
    lines = [head, "",
             f"### Input drift: {'**yes**' if inputs['flagged'] else 'no'}", "",
             f"Text descriptors of the logged predictions ({inputs['rows']['current']} rows, "
             f"served by {', '.join(map(code, summary['served_versions']))}) against the training "
             f"data of production {code(summary['production_version'])} "
             f"({inputs['rows']['reference']} "
             "rows). `unseen_word_share` counts words that the half of the training data a text "
             "did not fall into never used, for both sides alike; `<slice>_share` is the share "
             "of texts in each evaluation slice.", "", *_table(inputs), "",
             f"### Prediction drift: {'**yes**' if predictions.get('flagged') else 'no'}", ""]
    if "skipped" in predictions:
        lines.append(f"Not computed: {predictions['skipped']}.")
    else:
        lines += [f"`flagged` (share labelled as the positive class) and `score` (its "
                  f"probability) of {code(predictions['model_version'])} on the logged texts "
                  f"({predictions['rows']['current']} rows) against its own on the holdout "
                  f"({predictions['rows']['reference']} rows).", "", *_table(predictions)]
    if summary["flagged"]:
        lines += ["", "Review a sample in the review UI (`make review`), export the corrections "
                  "(`make feedback`) and push the new data version: the retrain workflow does "
                  "the rest. The full Evidently reports are in this run's drift-report artifact."]
    lines += ["", "---", "Effect: normed Wasserstein distance (the shift in reference standard "
              "deviations). A column drifts when the effect reaches its minimum and the K-S test "
              "rules out noise (family-wise level over all columns). " + summary["calibration"]]
    return "\n".join(lines) + "\n"


def open_issue_if_drifted(gh, out_dir: Path = OUT_DIR) -> tuple[str, dict[str, Any]] | None:
    """One open issue per production model while drift lasts (later runs comment on it)."""
    path = out_dir / "summary.json"
    if not path.is_file():
        raise DriftError(f"{path} not found: run `python -m pipelines drift report` first")
    summary = json.loads(path.read_text(encoding="utf-8"))
    if not summary["flagged"]:
        return None
    title = f"Drift against production {summary['production_version']}"
    return open_or_comment_issue(gh, title, (out_dir / "summary.md").read_text(encoding="utf-8"),
                                 ISSUE_LABEL)
