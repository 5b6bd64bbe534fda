"""The one error base of the pipeline: what went wrong, where, and what to do.

Every command line of the project prints a `PipelineError` as `error: …` and exits with its
`exit_code` (pipelines/core/cli.py), so no command needs a handler of its own."""

from __future__ import annotations


class PipelineError(Exception):
    """A failure the user can fix; the message says what and where. Exit code 1 unless set."""

    exit_code = 1

    @property
    def message(self) -> str:
        return str(self)


class UsageError(PipelineError):
    """Bad configuration or arguments (exit code 2, like a command-line usage error)."""

    exit_code = 2


class MissingFileError(PipelineError, FileNotFoundError):
    """A file the step needs is not there (still a FileNotFoundError for library callers)."""
