"""The promotion commit is built from a list of paths, in a throwaway index."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipelines.core.gitops import commit_files


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def test_a_listed_file_under_an_ignore_rule_is_committed_and_nothing_else(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch", "main")
    git(repo, "config", "user.name", "t")
    git(repo, "config", "user.email", "t@example.com")
    (repo / ".gitignore").write_text("/reports/*\n!/reports/metrics/\n")
    (repo / "params.yaml").write_text("a: 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "base")
    parent = git(repo, "rev-parse", "HEAD").strip()
    (repo / "reports/compare").mkdir(parents=True)
    (repo / "reports/compare/pr_curves.png").write_bytes(b"png")
    (repo / "reports/compare/other.html").write_text("not listed")
    (repo / "params.yaml").write_text("a: 2\n")

    commit = commit_files(repo, parent, ["reports/compare/pr_curves.png"], "promote")

    files = git(repo, "diff", "--name-only", parent, commit).split()
    assert files == ["reports/compare/pr_curves.png"]
    assert git(repo, "rev-parse", "HEAD").strip() == parent  # HEAD and the index untouched
    assert git(repo, "status", "--porcelain").split() == ["M", "params.yaml"]
