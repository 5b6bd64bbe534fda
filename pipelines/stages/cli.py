"""The DVC stages as commands of `python -m pipelines` (dvc.yaml runs each module directly)."""

from __future__ import annotations

import typer

from pipelines.stages import baseline, compare, evaluate, train, validate


def register(app: typer.Typer) -> None:
    app.command("validate")(validate.command)
    app.command("train")(train.command)
    app.command("train-baseline")(baseline.command)
    app.command("evaluate")(evaluate.command)
    app.command("summary")(evaluate.summary)
    app.command("compare")(compare.command)
    app.command("verdict")(compare.verdict)
