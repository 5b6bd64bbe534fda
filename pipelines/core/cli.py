"""What every command line of the pipeline shares (kept small: every stage imports it)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

from pipelines.runtime.errors import PipelineError

ParamsOpt = Annotated[Path, typer.Option("--params", help="Parameters file.")]


def _report(error: PipelineError) -> typer.Exit:
    print(f"error: {error}", file=sys.stderr)
    return typer.Exit(error.exit_code)


class _Group(TyperGroup):
    """Turns a PipelineError from any subcommand into `error: …` and its exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PipelineError as error:
            raise _report(error) from error


class _Command(TyperCommand):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PipelineError as error:
            raise _report(error) from error


def new_app(help: str, **kwargs) -> typer.Typer:
    """A Typer app with the project's defaults and its one error handler."""
    return typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True,
                       pretty_exceptions_enable=False, help=help, **kwargs)


def run_as_script(command: Callable) -> None:
    """Run one command as `python -m <module>` (how dvc.yaml calls each stage)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(cls=_Command)(command)
    app()
