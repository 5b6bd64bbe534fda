"""train-baseline stage: fit the TF-IDF model (pipelines/training/tfidf.py) on the training split
and save it with its metadata."""

from __future__ import annotations

import time
from pathlib import Path

import joblib

from pipelines.core.cli import ParamsOpt, run_as_script
from pipelines.core.data import read_split
from pipelines.core.model_writer import build_metadata, save_model_dir
from pipelines.runtime.canonical import canonical_texts
from pipelines.runtime.params import PARAMS_FILE, Params, load_params
from pipelines.training.tfidf import build_pipeline


def train_baseline(params: Params, out_dir: Path | str) -> dict:
    """Fit on the training split and save model.joblib and metadata.json into out_dir."""
    started = time.time()
    labels = list(params.data.labels)
    frame = read_split(params.data.train_file, params.data.max_train_rows)
    pipeline = build_pipeline(params.baseline, labels)
    # Class ids follow data.labels so that predict_proba columns line up with the label list;
    # the texts as the classifier will score them (it canonicalises at inference too).
    pipeline.fit(canonical_texts(frame.text), [labels.index(label) for label in frame.label])
    out_dir = Path(out_dir)
    metadata = build_metadata("baseline", params, params.baseline.model_dump(), frame, started)
    save_model_dir(out_dir, metadata,
                   lambda work_dir: joblib.dump(pipeline, work_dir / "model.joblib", compress=3))
    print(f"train-baseline: {metadata['version']} trained on {len(frame)} rows in "
          f"{metadata['training_seconds']} s; saved to {out_dir}")
    return metadata


def command(out: Path = Path("models/baseline"), params: ParamsOpt = PARAMS_FILE) -> None:
    """Fit the TF-IDF + logistic regression baseline."""
    train_baseline(load_params(params), out)


if __name__ == "__main__":
    run_as_script(command)
