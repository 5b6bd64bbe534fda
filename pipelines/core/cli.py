"""What every command line of the pipeline shares (kept small: every stage imports it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

ParamsOpt = Annotated[Path, typer.Option("--params", help="Parameters file.")]


def new_app(help: str, **kwargs) -> typer.Typer:
    """A Typer app with the project's defaults (errors are PipelineErrors, printed by click)."""
    return typer.Typer(add_completion=False, no_args_is_help=True,
                       pretty_exceptions_enable=False, rich_markup_mode=None, help=help,
                       **kwargs)


def run_as_script(command: Callable) -> None:
    """Run one command as `python -m <module>` (how dvc.yaml calls each stage)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                      rich_markup_mode=None)
    app.command()(command)
    app()
