"""Shared fixtures: a smoke-trained throwaway clone of the repo and a throwaway PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def repo_env(root: Path) -> dict[str, str]:
    """The environment `make` gives commands, for subprocesses run in `root`."""
    env = dict(os.environ)
    env.update(PYTHONPATH=str(root), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               DVC_NO_ANALYTICS="1", TOKENIZERS_PARALLELISM="false",
               PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    return env


def copy_repo(dest: Path) -> Path:
    """Copy the tracked files (as in the working tree) plus data/ into a fresh git repo."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())
    if not (REPO / "data" / "train.csv").exists():
        subprocess.run([sys.executable, "-m", "pipelines", "data", "pull"], cwd=REPO,
                       env=repo_env(REPO), check=True)
    shutil.copytree(REPO / "data", dest / "data")
    git = ["git", "-c", "user.email=tests@example.com", "-c", "user.name=tests"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "snapshot"], cwd=dest, check=True)
    return dest


@pytest.fixture(scope="session")
def smoke_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway clone on the smoke profile after `dvc repro`: models/candidate and baseline."""
    root = copy_repo(tmp_path_factory.mktemp("smoke") / "repo")
    env = repo_env(root)
    subprocess.run([sys.executable, "-m", "pipelines", "profile", "profiles/smoke.yaml"],
                   cwd=root, env=env, check=True, capture_output=True)
    result = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: run `apt-get install postgresql` "
                    "(.ci/run does this)")
    return found[-1].parent


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1; yields its base URL (no database name)."""
    bin_dir = _pg_bin()
    # Outside pytest's private (0700) temp tree, so the postgres user can reach it when root.
    base = Path(tempfile.mkdtemp(prefix="moderation-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    for cmd in ([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                 "-E", "UTF8"],
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w",
                 "-t", "30", "-o", f"-h 127.0.0.1 -p {port} -k {sock}", "start"]):
        result = subprocess.run([*as_user, *cmd], capture_output=True, text=True)
        assert result.returncode == 0, f"{cmd[0]} failed: {result.stdout}{result.stderr}"
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the throwaway cluster, as a postgresql:// URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


def wait_until(predicate, timeout: float, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
