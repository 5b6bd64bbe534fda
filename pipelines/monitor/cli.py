"""Commands that watch production: drift of logged traffic, the review UI over the prediction
log, and the export of reviewed corrections into the next dataset version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.core.cli import ParamsOpt, new_app
from pipelines.monitor.drift import (
    SERVING_MODEL,
    drift_against_production,
    open_issue_if_drifted,
    sample_predictions,
)
from pipelines.monitor.feedback import describe, export_feedback
from pipelines.release.github import GitHub
from pipelines.runtime.params import PARAMS_FILE, load_params
from service.review.app import serve
from service.review.settings import load_review_settings
from service.settings import load_settings

drift_app = new_app("Logged predictions against production's training data and the serving "
                    "model's own predictions on the holdout.")
DbUrlOpt = Annotated[str | None, typer.Option(
    "--db-url", help="Prediction log; default MODERATION_DB_URL or serve.db_url.")]


@drift_app.command("sample")
def drift_sample(db_url: DbUrlOpt = None, out: Path = Path("reports/drift/current.csv"),
                 params: ParamsOpt = PARAMS_FILE) -> None:
    """Write the newest logged predictions (compare.drift_sample_rows of them) to a CSV."""
    parsed = load_params(params)
    path = sample_predictions(db_url or load_settings(params).db_url,
                              parsed.compare.drift_sample_rows, parsed.data.labels[-1], out)
    print(f"drift: sampled the newest logged predictions into {path}")


@drift_app.command("report")
def drift_report(current: Path = Path("reports/drift/current.csv"),
                 out: Path = Path("reports/drift"),
                 model: Annotated[Path, typer.Option(
                     help="The serving model: its holdout predictions are the reference of the "
                          "prediction drift.")] = SERVING_MODEL,
                 params: ParamsOpt = PARAMS_FILE) -> None:
    """Input drift against production's training data, prediction drift against the serving
    model's holdout predictions (Evidently reports and summary.md)."""
    summary = drift_against_production(load_params(params), current, out, model)
    print(f"drift: {'DRIFT in ' + ', '.join(summary['drifted']) if summary['flagged'] else 'none'}"
          f"; reports in {out}/, summary {out / 'summary.md'}")


@drift_app.command("open-issue")
def drift_open_issue(out: Path = Path("reports/drift")) -> None:
    """Open an issue (or comment on the open one) when the report found drift."""
    outcome = open_issue_if_drifted(GitHub.from_env(), out)
    if outcome is None:
        print("drift: no drift; no issue")
        return
    action, issue = outcome
    print(f"drift: {action} issue #{issue['number']} {issue['html_url']}")


def review(host: Annotated[str | None, typer.Option(help="Default: feedback.host.")] = None,
           port: Annotated[int | None, typer.Option(help="Default: feedback.port.")] = None,
           params: ParamsOpt = PARAMS_FILE) -> None:
    """Serve the review UI over the prediction log (token: MODERATION_REVIEW_TOKEN)."""
    serve(load_review_settings(params), host, port)


def feedback(db_url: Annotated[str | None, typer.Option(
                 "--db-url", help="Prediction log; default serve.db_url or MODERATION_DB_URL.")]
             = None,
             params: ParamsOpt = PARAMS_FILE) -> None:
    """Append reviewed predictions to the training data and commit data.dvc on a new branch."""
    parsed = load_params(params)
    result = export_feedback(parsed, db_url or load_settings(params).db_url)
    print(describe(result, parsed.data.train_file))


def register(app: typer.Typer) -> None:
    app.add_typer(drift_app, name="drift")
    app.command()(review)
    app.command()(feedback)
