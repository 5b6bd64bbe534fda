"""Command line of the pipeline: every dvc.yaml stage and make target calls one of these."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipelines.data import DataError
from pipelines.params import ParamsError, apply_profile, load_params

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Moderation pipeline: data, validate, train, evaluate.")
data_app = typer.Typer(no_args_is_help=True, help="The dataset behind data.dvc.")
app.add_typer(data_app, name="data")

ParamsOpt = Annotated[Path, typer.Option("--params", help="Parameters file.")]


def _fail(message: str, code: int = 1) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _params(path: Path):
    try:
        return load_params(path)
    except ParamsError as e:
        _fail(str(e), 2)


@data_app.command("pull")
def data_pull(pointer: Path = Path("data.dvc")) -> None:
    """Resolve the data pointer from the DVC cache or remote."""
    from pipelines.data import pull_data

    try:
        digest = pull_data(pointer)
    except DataError as e:
        _fail(str(e))
    print(f"data: {pointer} resolved to version {digest} in data/")


@data_app.command("import-tweeteval")
def data_import(source: Path, out: Path = Path("data")) -> None:
    """Convert TweetEval-style text/label files into the tidy CSVs (train.csv, holdout.csv)."""
    from pipelines.data import import_tweeteval

    print(json.dumps(import_tweeteval(source, out), indent=2))


@app.command()
def profile(file: Path, params: ParamsOpt = Path("params.yaml")) -> None:
    """Lay a profile's overrides over params.yaml (e.g. the smoke profile, on a scratch clone)."""
    try:
        apply_profile(file, params)
    except ParamsError as e:
        _fail(str(e), 2)
    print(f"profile: {file} applied to {params}")


@app.command("check-params")
def check_params(params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate params.yaml against its schema."""
    _params(params)
    print(f"{params}: ok")


@app.command()
def validate(report: Path = Path("reports/validation.json"),
             params: ParamsOpt = Path("params.yaml")) -> None:
    """Check the training data and the holdout; exit 1 on any error-level finding."""
    from pipelines import validate as stage

    try:
        stage.run(_params(params), report)
    except DataError as e:
        _fail(str(e))


@app.command()
def train(out: Path = Path("models/candidate"), params: ParamsOpt = Path("params.yaml")) -> None:
    """Fine-tune the transformer candidate."""
    from pipelines.train import train as run_train

    try:
        run_train(_params(params), out)
    except DataError as e:
        _fail(str(e))


@app.command("train-baseline")
def train_baseline(out: Path = Path("models/baseline"),
                   params: ParamsOpt = Path("params.yaml")) -> None:
    """Fit the TF-IDF + logistic regression baseline."""
    from pipelines.baseline import train_baseline as run_baseline

    try:
        run_baseline(_params(params), out)
    except DataError as e:
        _fail(str(e))


@app.command()
def evaluate(name: str, model: Path, metrics: Path, plots: Path,
             params: ParamsOpt = Path("params.yaml")) -> None:
    """Score one model on the frozen holdout."""
    from pipelines.evaluate import evaluate as run_evaluate

    try:
        run_evaluate(_params(params), name, model, metrics, plots)
    except (DataError, FileNotFoundError) as e:
        _fail(str(e))


@app.command()
def summary(metrics_dir: Path = Path("reports/metrics")) -> None:
    """Print the holdout metrics of every evaluated model and where the outputs are."""
    files = sorted(metrics_dir.glob("*.json"))
    if not files:
        _fail(f"no metrics in {metrics_dir}: run `dvc repro` first")
    print(f"{'model':<12} {'version':<34} {'macro-F1':>8} {'ROC-AUC':>8} {'PR-AUC':>8} {'ECE':>6}")
    for path in files:
        m = json.loads(path.read_text(encoding="utf-8"))
        print(f"{path.stem:<12} {m['model_version']:<34} {m['macro_f1']:>8.4f} "
              f"{m['roc_auc'] or 0:>8.4f} {m['pr_auc'] or 0:>8.4f} {m['calibration_error']:>6.3f}")
    print("outputs: models/ (trained models), reports/metrics/ (metrics), "
          "reports/plots/ (confusion matrices, PR curves), reports/validation.json")


@app.command()
def bento(model: Path = Path("models/candidate")) -> None:
    """Import the model into the repo's BentoML store (.bentoml) and build the Bento."""
    from service.bento import build_bento

    if not (model / "metadata.json").exists():
        _fail(f"{model}: no trained model (metadata.json missing); run `make repro` first")
    tag = build_bento(model)
    print(f"bento: built {tag} in .bentoml/bentos (serve: make serve; "
          f"containerize: bentoml containerize {tag})")


@app.command()
def loadtest(bento_tag: Annotated[str, typer.Option("--bento")] = "moderation:latest",
             host: Annotated[str | None, typer.Option(help="Test this running service")] = None,
             out: Path = Path("reports/loadtest"),
             production_record: Path = Path("models/production-loadtest.json"),
             params: ParamsOpt = Path("params.yaml")) -> None:
    """Serve the Bento on loopback, run Locust headless and apply the load-test gate."""
    from loadtests.run import run_loadtest

    summary = run_loadtest(_params(params), bento_tag, out, production_record, host)
    if not summary["verdict"]["passed"]:
        _fail(f"load-test gate failed; see {out / 'summary.md'}")


@app.command("review")
def review(host: Annotated[str | None, typer.Option(help="Default: feedback.host.")] = None,
           port: Annotated[int | None, typer.Option(help="Default: feedback.port.")] = None,
           params: ParamsOpt = Path("params.yaml")) -> None:
    """Serve the review UI over the prediction log (token: MODERATION_REVIEW_TOKEN)."""
    from service.review.app import serve
    from service.review.settings import load_review_settings

    try:
        settings = load_review_settings(params)
    except ParamsError as e:
        _fail(str(e), 2)
    serve(settings, host, port)


@app.command("feedback")
def feedback(db_url: Annotated[str | None, typer.Option(
                 "--db-url", help="Prediction log; default serve.db_url or MODERATION_DB_URL.")]
             = None,
             params: ParamsOpt = Path("params.yaml")) -> None:
    """Append reviewed predictions to the training data and commit data.dvc on a new branch."""
    from pipelines.feedback import FeedbackError, describe, export_feedback
    from service.settings import load_settings

    parsed = _params(params)
    try:
        url = db_url or load_settings(params).db_url
        result = export_feedback(parsed, url)
    except (FeedbackError, ParamsError, DataError) as e:
        _fail(str(e))
    print(describe(result, parsed.data.train_file))
