"""evaluate stage: score a trained model on the frozen holdout and write DVC metrics and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.analysis.behaviour import check_names
from pipelines.analysis.metrics import pr_curve_points
from pipelines.analysis.plots import confusion_png, pr_curves_png
from pipelines.analysis.scoring import load_holdout, score_model
from pipelines.core.cli import ParamsOpt, run_as_script
from pipelines.runtime.classifier import load_classifier
from pipelines.runtime.errors import MissingFileError
from pipelines.runtime.params import PARAMS_FILE, Params, load_params


def write_plots(name: str, frame: pd.DataFrame, y_true: np.ndarray, proba: np.ndarray,
                metrics: dict, labels: list[str], plots_dir: Path) -> None:
    plots_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({
        "id": frame["id"] if "id" in frame else range(len(frame)),
        "actual": [labels[i] for i in y_true],
        "predicted": [labels[i] for i in proba.argmax(axis=1)],
        "score": np.round(proba[:, -1], 5),
    }).to_csv(plots_dir / "predictions.csv", index=False)
    curve = pr_curve_points(y_true, proba)
    pd.DataFrame(curve).to_csv(plots_dir / "pr_curve.csv", index=False)
    confusion_png(metrics["confusion_matrix"], labels,
                  f"{name}: macro-F1 {metrics['macro_f1']:.3f}", plots_dir / "confusion.png")
    pr_curves_png({name: curve}, f"{name}: precision-recall ({labels[-1]})",
                  plots_dir / "pr_curve.png")


def evaluate(params: Params, name: str, model_dir: Path | str, metrics_path: Path | str,
             plots_dir: Path | str) -> dict:
    """Score model_dir on the holdout; write metrics JSON, predictions, PR curve and images."""
    check_names(params.evaluate.behaviour)  # a misspelt check fails before the model loads
    classifier = load_classifier(model_dir, batch_size=params.evaluate.batch_size)
    frame, y_true = load_holdout(params.data)
    proba = classifier.predict_proba(list(frame.text))
    metrics = score_model(classifier, frame, y_true, list(params.data.labels), params.evaluate,
                          proba)
    metrics_path = Path(metrics_path)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    write_plots(name, frame, y_true, proba, metrics, list(params.data.labels), Path(plots_dir))
    print(f"evaluate: {name} ({classifier.version}) holdout macro-F1 {metrics['macro_f1']:.4f} "
          f"on {metrics['n']} texts; metrics: {metrics_path}; plots: {plots_dir}")
    return metrics


def command(name: str, model: Path, metrics: Path, plots: Path, params: ParamsOpt = PARAMS_FILE
            ) -> None:
    """Score one model on the frozen holdout."""
    evaluate(load_params(params), name, model, metrics, plots)


def summary(metrics_dir: Path = Path("reports/metrics")) -> None:
    """Print the holdout metrics of every evaluated model and where the outputs are."""
    files = sorted(metrics_dir.glob("*.json"))
    if not files:
        raise MissingFileError(f"no metrics in {metrics_dir}: run `dvc repro` first")
    print(f"{'model':<12} {'version':<34} {'macro-F1':>8} {'ROC-AUC':>8} {'PR-AUC':>8} {'ECE':>6}")
    for path in files:
        m = json.loads(path.read_text(encoding="utf-8"))
        print(f"{path.stem:<12} {m['model_version']:<34} {m['macro_f1']:>8.4f} "
              f"{m['roc_auc'] or 0:>8.4f} {m['pr_auc'] or 0:>8.4f} {m['calibration_error']:>6.3f}")
    print("outputs: models/ (trained models), reports/metrics/ (metrics), "
          "reports/plots/ (confusion matrices, PR curves), reports/validation.json")


if __name__ == "__main__":
    run_as_script(command)
