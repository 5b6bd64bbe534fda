"""compare stage: re-score production and candidate on the frozen holdout and gate the candidate."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from sklearn.metrics import confusion_matrix

from pipelines.analysis.comparison_record import (
    CandidateScores,
    Comparison,
    Holdout,
    ProductionScores,
)
from pipelines.analysis.gate import decide
from pipelines.analysis.head_to_head import (
    behaviour_deltas,
    data_and_params_changes,
    metric_deltas,
    prediction_flips,
    slice_deltas,
)
from pipelines.analysis.metrics import pr_curve_points
from pipelines.analysis.plots import confusion_png, pr_curves_png
from pipelines.analysis.pr_body import render_pr_body
from pipelines.analysis.scoring import load_holdout, score_model
from pipelines.analysis.stats import mcnemar
from pipelines.core.cli import ParamsOpt, run_as_script
from pipelines.core.data import DATA_POINTER, file_md5, read_split
from pipelines.core.decision import COMPARE_DIR, DECISION_FILE, REJECT, Decision
from pipelines.core.production import (
    POINTER,
    WEIGHTS,
    ProductionError,
    ProductionRecord,
    check_holdout,
    check_weights,
    production_training_rows,
    read_pointer,
)
from pipelines.runtime.classifier import load_classifier
from pipelines.runtime.errors import PipelineError
from pipelines.runtime.metadata import ModelMetadata
from pipelines.runtime.params import PARAMS_FILE, Params, load_params

OUT_DIR = COMPARE_DIR
VALIDATION_REPORT = Path("reports/validation.json")


def write_plots(y: np.ndarray, prod: np.ndarray | None, cand: np.ndarray, labels: list[str],
                prod_name: str | None, cand_name: str, out_dir: Path) -> dict[str, str]:
    paths = {}
    curves = {}
    for role, proba, name in (("production", prod, prod_name), ("candidate", cand, cand_name)):
        if proba is None:
            continue
        matrix = confusion_matrix(y, proba.argmax(axis=1), labels=range(len(labels))).tolist()
        path = out_dir / f"confusion_{role}.png"
        confusion_png(matrix, labels, f"{role}: {name}", path)
        paths[f"confusion_{role}"] = str(path)
        curves[f"{role} ({name})"] = pr_curve_points(y, proba)
    path = out_dir / "pr_curves.png"
    pr_curves_png(curves, f"precision-recall ({labels[-1]}), holdout", path)
    paths["pr_curves"] = str(path)
    return paths


def load_production(holdout_file: str, pointer: Path, weights: Path
                    ) -> tuple[ProductionRecord, Path, ModelMetadata] | None:
    """The production record, weights dir and their metadata after every consistency check
    (None: no production model, the bootstrap)."""
    record = read_pointer(pointer)
    if record is None:
        return None
    weights_dir, metadata = check_weights(record, weights)
    check_holdout(record, file_md5(holdout_file), holdout_file)
    return record, weights_dir, metadata


def label_noise_section(validation: Path, dataset_md5: str, mask_text: bool) -> dict[str, Any]:
    """validate's label_noise estimate for the candidate's data version, as the PR shows it."""
    if not validation.exists():
        return {"skipped": f"{validation} not found: run the validate stage"}
    report = json.loads(validation.read_text(encoding="utf-8"))
    if report.get("dataset_md5") != dataset_md5:
        return {"skipped": f"{validation} is for data version {report.get('dataset_md5')}, the "
                           f"candidate learned {dataset_md5}: rerun the validate stage"}
    noise = report.get("label_noise") or {"scored": False, "reason": "validation failed early"}
    if not noise["scored"]:
        return {"skipped": noise["reason"]}
    if mask_text:
        noise = noise | {"suspicious": [
            row | {"text": f"sha256:{hashlib.sha256(row['text'].encode()).hexdigest()[:12]}"}
            for row in noise["suspicious"]]}
    return noise


def compare_to_production(params: Params, candidate_dir: Path | str,
                          out_dir: Path | str = OUT_DIR, pointer: Path | str = POINTER,
                          weights: Path | str = WEIGHTS, link_base: str = "",
                          validation: Path | str = VALIDATION_REPORT) -> Decision:
    """Score both models on the holdout, write every report and the decision; return it."""
    started = time.time()
    out_dir = Path(out_dir)
    loaded = load_production(params.data.holdout_file, Path(pointer), Path(weights))
    production = loaded[0] if loaded else None
    out_dir.mkdir(parents=True, exist_ok=True)
    # A verdict from an earlier run must not survive a run that fails half-way.
    for stale in (DECISION_FILE, "pr_body.md", "comparison.json"):
        (out_dir / stale).unlink(missing_ok=True)
    labels = list(params.data.labels)
    frame, y = load_holdout(params.data)
    texts = list(frame.text)
    batch = params.evaluate.batch_size
    candidate = load_classifier(candidate_dir, batch_size=batch)
    print(f"compare: scoring candidate {candidate.version} on {len(texts)} holdout texts")
    cand_proba = candidate.predict_proba(texts)
    cand_metrics = score_model(candidate, frame, y, labels, params.evaluate, cand_proba)
    comparison = Comparison(
        candidate=CandidateScores(candidate.version, candidate.metadata.kind, cand_metrics),
        production=None, confidence=params.compare.confidence,
        holdout=Holdout(params.data.holdout_file, file_md5(params.data.holdout_file), len(texts)),
        changes=data_and_params_changes(production, candidate.metadata),
        label_noise=label_noise_section(Path(validation), candidate.metadata.dataset.md5,
                                        params.compare.mask_flip_text))
    prod_proba = None
    if loaded:
        production, weights_dir, prod_metadata = loaded
        prod_clf = load_classifier(weights_dir, batch_size=batch, metadata=prod_metadata)
        print(f"compare: scoring production {prod_clf.version} on the same texts")
        prod_proba = prod_clf.predict_proba(texts)
        prod_metrics = score_model(prod_clf, frame, y, labels, params.evaluate, prod_proba)
        comparison.production = ProductionScores(
            prod_clf.version, production.kind, prod_metrics,
            bento_tag=production.bento_tag, image=production.image)
        comparison.deltas = metric_deltas(y, prod_proba, cand_proba, params.compare)
        comparison.mcnemar = mcnemar(y, prod_proba.argmax(axis=1), cand_proba.argmax(axis=1))
        comparison.slices = slice_deltas(y, prod_proba, cand_proba, texts,
                                         params.evaluate.slices, params.compare)
        comparison.behaviour = behaviour_deltas(prod_metrics["behaviour"],
                                                cand_metrics["behaviour"])
        comparison.flips = prediction_flips(frame, y, prod_proba, cand_proba, labels,
                                            params.compare.max_flips,
                                            params.compare.mask_flip_text)
    decision = decide(comparison, params.gate)
    comparison.plots = write_plots(y, prod_proba, cand_proba, labels,
                                      production and production.version, candidate.version,
                                      out_dir)
    comparison.evidently = evidently_section(params, frame, y, prod_proba, cand_proba,
                                                production, out_dir)
    comparison.seconds = round(time.time() - started, 1)
    (out_dir / "comparison.json").write_text(json.dumps(comparison.to_json(), indent=2,
                                                        default=str),
                                             encoding="utf-8")
    decision.write(out_dir / DECISION_FILE)
    (out_dir / "pr_body.md").write_text(render_pr_body(comparison, decision, out_dir, link_base),
                                        encoding="utf-8")
    return decision


def evidently_section(params: Params, frame: pd.DataFrame, y: np.ndarray,
                      prod_proba: np.ndarray | None, cand_proba: np.ndarray,
                      production: ProductionRecord | None, out_dir: Path) -> dict[str, Any]:
    """Run both Evidently reports (those that apply); a missing input is said, not hidden."""
    from pipelines.analysis import evidently_reports  # lazy: Evidently takes seconds to import

    labels = list(params.data.labels)
    section: dict[str, Any] = {}
    if production is None:
        note = "no production model: nothing to compare against"
        return {"quality": {"skipped": note}, "drift": {"skipped": note}}

    def as_model(proba: np.ndarray) -> dict[str, np.ndarray]:
        return {"labels": np.array(labels)[proba.argmax(axis=1)], "score": proba[:, -1]}

    print("compare: Evidently quality report (candidate vs production on the holdout)")
    section["quality"] = evidently_reports.quality_report(
        [labels[i] for i in y], as_model(prod_proba), as_model(cand_proba), labels[-1],
        params.gate.macro_f1_margin, out_dir)
    try:
        reference = production_training_rows(production.dataset, params.data.train_file,
                                             DATA_POINTER)
    except ProductionError as e:
        section["drift"] = {"skipped": f"production's training data unavailable: {e}"}
        return section
    current = read_split(params.data.train_file, params.data.max_train_rows)
    print("compare: Evidently drift report (candidate's vs production's training data)")
    section["drift"] = evidently_reports.training_drift(
        reference, current, labels[-1], params.compare, params.evaluate.slices, out_dir)
    return section


def run(params: Params, candidate_dir: Path | str, out_dir: Path | str = OUT_DIR,
        link_base: str = "") -> Decision:
    """The stage: compare, print the verdict and where every report went."""
    decision = compare_to_production(params, candidate_dir, out_dir, link_base=link_base)
    out_dir = Path(out_dir)
    print(f"compare: verdict: {decision.verdict.upper()}"
          + (f" (failed: {', '.join(decision.failed)})" if decision.failed else ""))
    print(f"compare: decision {out_dir / DECISION_FILE}; PR body {out_dir / 'pr_body.md'}; "
          f"reports {out_dir / 'quality.html'}, {out_dir / 'drift.html'}")
    return decision


class Rejected(PipelineError):
    """The gate rejected the candidate (exit 1 where a reject must fail the job)."""


def gate_fails_job(ci: bool | None) -> bool:
    """A reject exits 1 with --ci, or by default on CI (CI=true); --no-ci never (dvc repro)."""
    return ci if ci is not None else os.environ.get("CI", "").lower() == "true"


def fail_on_reject(decision: Decision, out: Path, ci: bool | None) -> None:
    if decision.verdict == REJECT and gate_fails_job(ci):
        raise Rejected(f"candidate rejected by the gate: {', '.join(decision.failed)}; "
                       f"see {out / 'pr_body.md'}")


CiOpt = Annotated[bool | None, typer.Option(
    "--ci/--no-ci", help="Exit 1 on reject (default: when CI=true).")]


def command(candidate: Annotated[Path, typer.Argument(help="Candidate model directory.")]
            = Path("models/candidate"),
            out: Annotated[Path, typer.Option(help="Report folder.")] = OUT_DIR,
            ci: CiOpt = None,
            link_base: Annotated[str, typer.Option(
                help="URL the report folder is published at; prefixes the PR body's links.")]
            = "",
            params: ParamsOpt = PARAMS_FILE) -> None:
    """Compare the candidate with production on the frozen holdout; write reports and verdict."""
    fail_on_reject(run(load_params(params), candidate, out, link_base), out, ci)


def verdict(out: Annotated[Path, typer.Argument(help="Report folder of `compare`.")] = OUT_DIR,
            ci: CiOpt = None) -> None:
    """Print the comparison's verdict and where its reports are; the gate of `make compare`."""
    decision = Decision.load(out / DECISION_FILE)
    against = (f"production {decision.production_version}" if decision.production_version
               else "no production model (floors only)")
    print(f"verdict: {decision.verdict.upper()} for {decision.candidate_version} vs "
          f"{against}" + (f"; failed: {', '.join(decision.failed)}" if decision.failed
                          else ""))
    for name in ("pr_body.md", "quality.html", "drift.html", DECISION_FILE):
        if (out / name).exists():
            print(f"  {out / name}")
    fail_on_reject(decision, out, ci)


if __name__ == "__main__":
    run_as_script(command)
