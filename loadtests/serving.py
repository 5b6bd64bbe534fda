"""Start a server subprocess on loopback, wait for its readiness probe, stop it gracefully."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, timeout: float = 2.0) -> int:
    """The status code of a GET, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def bentoml_serve_command(target: str, port: int) -> list[str]:
    """`bentoml serve` for a Bento tag or an import path, bound to loopback."""
    return [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1",
            "--port", str(port)]


@contextmanager
def running_server(cmd: list[str], port: int, log_file: Path, env: dict[str, str] | None = None,
                   cwd: Path | None = None, ready_path: str = "/readyz",
                   startup_timeout: float = 120) -> Iterator[tuple[str, subprocess.Popen, float]]:
    """Yield (base URL, process, seconds from start to ready); SIGTERM and wait on exit."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log_file.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while http_status(base + ready_path) != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(cmd[:4])} did not become ready; log {log_file}:\n"
                                   f"{log_file.read_text()[-4000:]}")
            time.sleep(0.1)
        yield base, proc, time.perf_counter() - started
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
