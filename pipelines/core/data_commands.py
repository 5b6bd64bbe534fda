"""Commands about the core itself: the data pointer and params.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipelines.core.cli import ParamsOpt, new_app
from pipelines.core.data import DATA_POINTER, import_tweeteval
from pipelines.core.versions import pull_data
from pipelines.runtime.params import PARAMS_FILE, apply_profile, load_params

data_app = new_app("The dataset behind data.dvc.")


@data_app.command("pull")
def data_pull(pointer: Path = DATA_POINTER) -> None:
    """Resolve the data pointer from the DVC cache or remote."""
    digest = pull_data(pointer)
    print(f"data: {pointer} resolved to version {digest} in data/")


@data_app.command("import-tweeteval")
def data_import(source: Path, out: Path = Path("data")) -> None:
    """Convert TweetEval-style text/label files into the tidy CSVs (train.csv, holdout.csv)."""
    print(json.dumps(import_tweeteval(source, out), indent=2))


def profile(file: Path, params: ParamsOpt = PARAMS_FILE) -> None:
    """Lay a profile's overrides over params.yaml (e.g. the smoke profile, on a scratch clone)."""
    apply_profile(file, params)
    print(f"profile: {file} applied to {params}")


def check_params(params: ParamsOpt = PARAMS_FILE) -> None:
    """Validate params.yaml against its schema."""
    load_params(params)
    print(f"{params}: ok")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
    app.command()(profile)
    app.command("check-params")(check_params)
