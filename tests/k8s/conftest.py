"""Fixtures for the Kubernetes tests: every overlay rendered and schema-checked once per session,
and throwaway copies of k8s/ (optionally a git repository) to break or change."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipelines.deploy.pins import render_targets
from pipelines.deploy.policy import schema_findings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """{overlay or variant: rendered documents}, rendered once with the venv's kubectl."""
    return render_targets(REPO)


@pytest.fixture(scope="session")
def schema_result(rendered):
    """kubernetes-validate --strict findings over every rendered target (one run)."""
    return schema_findings(rendered)


@pytest.fixture
def k8s_copy(tmp_path) -> Path:
    """A repository root holding a private copy of k8s/ (edit it freely)."""
    shutil.copytree(REPO / "k8s", tmp_path / "k8s")
    return tmp_path


@pytest.fixture
def git_env(monkeypatch) -> dict[str, str]:
    identity = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.org",
                "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.org",
                "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for key, value in identity.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **identity}


@pytest.fixture
def k8s_repo(k8s_copy, git_env) -> Path:
    """k8s_copy as a git repository with one commit on main."""
    for args in (["init", "--quiet", "-b", "main"], ["add", "k8s"],
                 ["commit", "--quiet", "-m", "initial manifests"]):
        subprocess.run(["git", "-C", str(k8s_copy), *args], check=True, env=git_env)
    return k8s_copy
