"""The one error base of the pipeline: what went wrong, where, and what to do.

It is a `click.ClickException`, so the command line (Typer runs on click) prints it as
`error: …` and exits with `exit_code` without a handler per command; library callers catch it
like any exception."""

from __future__ import annotations

import sys

import click


class PipelineError(click.ClickException):
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
