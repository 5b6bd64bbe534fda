"""`make test` installs the Debian packages the suite drives, from one list in the Makefile, and
without root or sudo stops at once with the exact command; `.ci/run` is only `make test`."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


def system_packages() -> dict[str, str]:
    text = (ROOT / "Makefile").read_text()
    block = re.search(r"^SYSTEM_PACKAGES := (.*?)(?<!\\)\n", text, re.M | re.S).group(1)
    return dict(entry.split(":", 1) for entry in block.replace("\\\n", " ").split())


def test_the_list_names_every_system_tool_the_tests_drive():
    packages = system_packages()
    assert {"postgresql", "chromium", "nodejs", "npm", "prometheus", "bubblewrap"} <= set(
        packages)
    assert packages["prometheus"] == "/usr/bin/promtool"
    assert packages["bubblewrap"] == "/usr/bin/bwrap"
    assert {"podman", "buildah", "runc", "mmdebstrap"} <= set(packages)  # tests/k8s/test_image.py


def test_make_test_installs_them_first():
    text = (ROOT / "Makefile").read_text()
    # userns after system-packages: it probes the bubblewrap that system-packages installs
    assert re.search(r"^test: venv system-packages userns node\b", text, re.M)


def test_ci_runs_only_make_test_on_a_fresh_venv():
    commands = [line for line in (ROOT / ".ci/run").read_text().splitlines()
                if line and not line.startswith("#")]
    assert commands[-2:] == ["rm -rf .venv", "make test"]
    assert not any("apt-get" in line for line in commands)


@pytest.mark.skipif(shutil.which("runuser") is None, reason="needs runuser (util-linux)")
def test_without_root_or_sudo_it_stops_with_the_exact_command():
    if subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0":
        pytest.skip("runs the unprivileged case as root through runuser")
    # The Makefile and the files it hashes, in a folder `nobody` may enter: the checkout may sit
    # where only root can (a clone under `mktemp -d`, a private home).
    here = Path(tempfile.mkdtemp(prefix="system-packages-"))
    try:
        for name in ("Makefile", "requirements.lock", "pyproject.toml"):
            shutil.copy(ROOT / name, here / name)
        here.chmod(0o755)
        result = subprocess.run(
            ["runuser", "-u", "nobody", "--", "make", "-s", "-C", str(here), "system-packages",
             "SYSTEM_PACKAGES=demo-package:/nonexistent/demo bubblewrap:/usr/bin/bwrap"],
            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/sbin:/usr/bin:/bin"})
    finally:
        shutil.rmtree(here)
    assert result.returncode != 0
    assert "sudo apt-get update && sudo apt-get install -y demo-package" in result.stderr
    assert "bubblewrap" not in result.stderr  # present, so not asked for


def test_nothing_is_installed_when_everything_is_present():
    result = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "system-packages",
         "SYSTEM_PACKAGES=coreutils:/usr/bin/env"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
