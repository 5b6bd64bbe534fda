"""Start the real BentoML moderation service as a subprocess for tests (loopback only)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port, repo_env


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


@contextmanager
def running_service(root: Path, settings: dict[str, str], log_file: Path,
                    startup_timeout: float = 120) -> Iterator[tuple[str, subprocess.Popen]]:
    """`bentoml serve service.service:Moderation` in `root` with MODERATION_* settings."""
    port = free_port()
    env = repo_env(root)
    env["BENTOML_HOME"] = str(log_file.parent / "bentoml-home")
    env.update({f"MODERATION_{k.upper()}": v for k, v in settings.items()})
    with log_file.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve",
                                 "service.service:Moderation", "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=root, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while http_status(base + "/readyz") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"service did not become ready:\n{log_file.read_text()[-4000:]}")
            time.sleep(0.3)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
