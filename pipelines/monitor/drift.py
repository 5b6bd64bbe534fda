"""The drift workflow's steps: sample the logged predictions, compare them with the production
model's training data (the comparison's Evidently drift report), and open an issue on drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.core.errors import PipelineError
from pipelines.core.params import Params

OUT_DIR = Path("reports/drift")
SAMPLE = "current.csv"
ISSUE_LABEL = "drift"


class DriftError(PipelineError):
    """The drift check cannot run; the message says what is missing."""


def sample_predictions(db_url: str, rows: int, out: Path) -> Path:
    """The newest `rows` logged predictions that kept their text, as text,label (the label is
    the one the serving model predicted)."""
    from service.predlog import backend_of, connect, create_schema

    backend_of(db_url)  # a bad URL fails here, naming it
    create_schema(db_url)  # an empty log reads as empty rather than failing on a missing table
    conn = connect(db_url)
    try:
        cursor = conn.execute(
            "SELECT text, label, model_version, created_at FROM predictions "
            f"WHERE text IS NOT NULL ORDER BY id DESC LIMIT {int(rows)}")
        frame = pd.DataFrame(cursor.fetchall(),
                             columns=["text", "label", "model_version", "created_at"])
    finally:
        conn.close()
    if frame.empty:
        raise DriftError("the prediction log has no predictions with their text (serve.log_text: "
                         "hash keeps only digests, which a drift report cannot read)")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame["created_at"] = frame["created_at"].astype(str)
    frame.to_csv(out, index=False)
    return out


def drift_against_production(params: Params, current_csv: Path, out_dir: Path = OUT_DIR
                             ) -> dict[str, Any]:
    """Evidently drift of the sampled predictions against production's training data."""
    from pipelines.core.production import read_pointer
    from pipelines.stages.compare import production_training_frame
    from pipelines.stages.evidently_reports import drift_report

    if not current_csv.is_file():
        raise DriftError(f"{current_csv} not found: run `python -m pipelines drift sample` first")
    production = read_pointer()
    if production is None:
        raise DriftError("models/production.yaml has version: null: no production model, so no "
                         "training data to compare the logged predictions with")
    reference = production_training_frame(production, params)
    current = pd.read_csv(current_csv, dtype=str, keep_default_na=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = drift_report(reference, current, params.compare.drift_sample_rows,
                          params.compare.seed, out_dir)
    summary = {"production_version": production["version"],
               "served_versions": sorted(current.model_version.unique()),
               "flagged": result["flagged"], "drifted": result["drifted"],
               "rows": result["rows"], "columns": result["columns"], "html": result["html"]}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out_dir / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    """The issue body: what drifted, by how much, and what to do."""
    head = ("## Input drift detected" if summary["flagged"] else "## No input drift")
    lines = [head, "",
             f"Logged predictions ({summary['rows']['current']} rows, served by "
             f"{', '.join(summary['served_versions'])}) against the training data of production "
             f"`{summary['production_version']}` ({summary['rows']['reference']} rows). The "
             "`label` row compares the predicted labels with the training labels.", "",
             "| column | method | value | threshold | reference mean | current mean | drifted |",
             "|---|---|---|---|---|---|---|"]
    for name, c in summary["columns"].items():
        lines.append(f"| {name} | {c['method']} | {c['value']} | {c['threshold']} | "
                     f"{c['reference_mean']} | {c['current_mean']} | "
                     f"{'**yes**' if c['drifted'] else 'no'} |")
    if summary["flagged"]:
        lines += ["", "Review a sample in the review UI (`make review`), export the corrections "
                  "(`make feedback`) and push the new data version: the retrain workflow does "
                  "the rest. The full Evidently report is in this run's drift-report artifact."]
    return "\n".join(lines) + "\n"


def open_issue_if_drifted(gh, out_dir: Path = OUT_DIR) -> tuple[str, dict[str, Any]] | None:
    """One open issue per production model while drift lasts (later runs comment on it)."""
    from pipelines.release.github import open_or_comment_issue

    path = out_dir / "summary.json"
    if not path.is_file():
        raise DriftError(f"{path} not found: run `python -m pipelines drift report` first")
    summary = json.loads(path.read_text(encoding="utf-8"))
    if not summary["flagged"]:
        return None
    title = f"Input drift against production {summary['production_version']}"
    return open_or_comment_issue(gh, title, (out_dir / "summary.md").read_text(encoding="utf-8"),
                                 ISSUE_LABEL)
