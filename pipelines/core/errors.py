"""The one error base of the pipeline: what went wrong, where, and what to do.

It is a `click.ClickException`, so the command line (Typer runs on click) prints it as
`error: …` and exits with `exit_code` without a handler per command; library callers catch it
like any exception."""

from __future__ import annotations

import sys

import click

try:  # Typer >= 0.26 runs on its own copy of click and only catches that copy's exceptions
    from typer._click.exceptions import ClickException as _TyperClickException

    _CLICK_BASES: tuple[type, ...] = (click.ClickException, _TyperClickException)
except ImportError:  # pragma: no cover - older Typer uses click itself
    _CLICK_BASES = (click.ClickException,)


class PipelineError(*_CLICK_BASES):
    """A failure the user can fix; the message says what and where. Exit code 1 unless set."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def show(self, file=None) -> None:
        print(f"error: {self.message}", file=file or sys.stderr)


class UsageError(PipelineError):
    """Bad configuration or arguments (exit code 2, like click's own usage errors)."""

    exit_code = 2


class MissingFileError(PipelineError, FileNotFoundError):
    """A file the step needs is not there (still a FileNotFoundError for library callers)."""
