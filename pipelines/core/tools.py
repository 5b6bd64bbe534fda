"""Running the tools the pipeline calls (git, dvc, kubectl, aws): one wrapper, one error.

Kept apart from gitops.py so that the stages, which call dvc and git through it, do not depend
on the git plumbing of the bot branches."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from pipelines.runtime.errors import PipelineError


class CommandError(PipelineError):
    """A command the pipeline runs failed; the message names it and quotes its own words."""


def _shown(cmd: Sequence[str]) -> str:
    return " ".join("http.extraheader=<token>" if str(a).startswith("http.extraheader=")
                    else str(a) for a in cmd)


def run(cmd: Sequence[str | Path], what: str = "", *, cwd: Path | str | None = None,
        env: dict[str, str] | None = None, stdin: str | bytes | None = None,
        timeout: float = 300, check: bool = True, binary: bool = False,
        error: type[PipelineError] = CommandError) -> str | bytes:
    """Run cmd and return its stdout. When it fails (or is missing, or times out) and check is
    set, raise `error` naming what was being done, the command (tokens redacted) and its stderr."""
    cmd = [str(a) for a in cmd]
    prefix = f"{what}: " if what else ""
    try:
        result = subprocess.run(cmd, cwd=cwd, env=env, input=stdin, capture_output=True,
                                text=not binary, timeout=timeout, check=False)
    except FileNotFoundError:
        raise error(f"{prefix}{cmd[0]} is not installed (or not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise error(f"{prefix}`{_shown(cmd)}` did not finish within {timeout:g} s") from None
    if check and result.returncode != 0:
        said = result.stderr or result.stdout
        said = said.decode(errors="replace") if binary else said
        raise error(f"{prefix}`{_shown(cmd)}` failed: {said.strip()}")
    return result.stdout


def succeeds(cmd: Sequence[str | Path], cwd: Path | str | None = None,
             timeout: float = 60) -> bool:
    """Whether cmd exits 0 (a probe such as `git cat-file -e`); its output is discarded."""
    try:
        return subprocess.run([str(a) for a in cmd], cwd=cwd, capture_output=True,
                              timeout=timeout, check=False).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def dvc(*args: str, root: Path | str | None = None, timeout: float = 1800,
        error: type[PipelineError] = CommandError) -> str:
    """Run dvc (in root, default the working directory); its stdout, or `error` with its stderr."""
    return run(["dvc", *args], cwd=root, timeout=timeout, error=error)
