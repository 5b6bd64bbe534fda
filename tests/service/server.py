"""Start the real BentoML moderation service from a repo copy, for tests (loopback only)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadtests.serving import bentoml_serve_command, free_port, running_server
from tests.conftest import repo_env


@contextmanager
def running_service(root: Path, settings: dict[str, str],
                    log_file: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`bentoml serve service.service:Moderation` in `root` with MODERATION_* settings (the
    SIGTERM drain shortened to 2 s unless given: every stop answers for its whole budget)."""
    settings = {"drain_timeout_s": "2", **settings}
    port = free_port()
    env = repo_env(root, BENTOML_HOME=str(log_file.parent / "bentoml-home"))
    env.update({f"MODERATION_{k.upper()}": v for k, v in settings.items()})
    cmd = bentoml_serve_command("service.service:Moderation", port)
    with running_server(cmd, port, log_file, env=env, cwd=root) as (base, proc, _):
        yield base, proc
