"""Shared fixtures: throwaway copies of this repository, and one smoke-trained copy per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SMOKE_PROFILE = "profiles/smoke.yaml"


def repo_env(repo: Path, **extra: str) -> dict[str, str]:
    """Environment for commands run inside a copy: its own code first, offline, no telemetry."""
    env = dict(os.environ)
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(repo),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DVC_NO_ANALYTICS="1",
               TOKENIZERS_PARALLELISM="false", GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="t@t")
    env.update(extra)
    return env


def run(cmd: list[str] | str, cwd: Path, check: bool = True, timeout: float = 600,
        **env: str) -> subprocess.CompletedProcess:
    """Run a command in a repository copy and capture its output (shown when check fails)."""
    result = subprocess.run(cmd, cwd=cwd, env=repo_env(cwd, **env), capture_output=True,
                            text=True, timeout=timeout, shell=isinstance(cmd, str), check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}\nstdout:\n{result.stdout}\n"
                             f"stderr:\n{result.stderr}")
    return result


def copy_repo(dest: Path) -> Path:
    """Copy the working tree (tracked and untracked, not ignored) into dest as a fresh git repo."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    run("git init -q && git add -A && git commit -qm 'test copy'", dest)
    return dest


@pytest.fixture(scope="session")
def base_repo(tmp_path_factory) -> Path:
    """A copy of the repository with data.dvc resolved into data/ (read-only for tests)."""
    repo = copy_repo(tmp_path_factory.mktemp("base") / "repo")
    run([sys.executable, "-m", "pipelines", "data", "pull"], repo)
    return repo


@pytest.fixture
def fresh_repo(base_repo, tmp_path) -> Path:
    """A private, writable copy of base_repo for one test."""
    return Path(shutil.copytree(base_repo, tmp_path / "repo", symlinks=True))


@pytest.fixture(scope="session")
def smoke_repo(base_repo, tmp_path_factory) -> Path:
    """A copy on the smoke profile with the whole DVC pipeline run (read-only for tests)."""
    repo = Path(shutil.copytree(base_repo, tmp_path_factory.mktemp("smoke") / "repo",
                                symlinks=True))
    run([sys.executable, "-m", "pipelines", "profile", SMOKE_PROFILE], repo)
    run(["dvc", "repro"], repo)
    return repo
