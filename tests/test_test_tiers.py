"""`make test-fast` leaves nothing out silently: each test is either in the fast tier or marked
slow, never both, and `make test` (what CI runs) selects every test."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SLOW_TESTS, repo_env


def pytest_args(target: str) -> list[str]:
    """The arguments the make target passes to pytest (its recipe as `make -n` prints it)."""
    printed = subprocess.run(["make", "-n", "--no-print-directory", target, "PYTEST_ARGS="],
                             cwd=ROOT, capture_output=True, text=True, timeout=60,
                             check=True).stdout
    (line,) = [line for line in printed.splitlines() if "-m pytest" in line]
    return shlex.split(line.split("-m pytest", 1)[1])


def collected(*args: str) -> set[str]:
    """Node ids pytest collects with these arguments."""
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                             "-p", "no:cacheprovider", *args], cwd=ROOT, env=repo_env(ROOT),
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {line for line in result.stdout.splitlines() if "::" in line}


def test_make_test_passes_pytest_no_selection():
    assert pytest_args("test") == []


@pytest.mark.slow  # collects the whole suite three times
def test_fast_and_slow_tiers_are_disjoint_and_together_the_whole_suite():
    everything = collected(*pytest_args("test"))
    fast = collected(*pytest_args("test-fast"))
    slow = collected("-m", "slow")
    assert fast and slow
    assert not fast & slow
    assert fast | slow == everything
    # what the hook in tests/conftest.py marks: the PostgreSQL half of db_url, tests on the
    # smoke-trained repository (the image tests), while the SQLite half stays fast
    assert all(t in slow for t in everything if re.search(r"[\[-]postgresql[\]-]", t))
    assert any(re.search(r"[\[-]sqlite[\]-]", t) for t in fast)
    assert all(t in slow for t in everything if t.startswith("tests/k8s/test_image.py::"))
    # an entry naming a renamed or deleted test would mark nothing, silently
    stale = [entry for entry in SLOW_TESTS if not any(t.startswith(entry) for t in slow)]
    assert not stale, f"SLOW_TESTS in tests/conftest.py matches no test: {stale}"
