"""System tools the Kubernetes tests drive for real (Debian packages `make system-packages`
installs): a clear failure naming the command when one is missing, never a skip."""

from __future__ import annotations

import shutil

import pytest

PACKAGES = {"prometheus": "prometheus", "promtool": "prometheus", "bwrap": "bubblewrap"}


def require_tool(name: str) -> str:
    """The path of a system executable the test needs."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run `make system-packages` "
                    f"(or `apt-get install -y {PACKAGES.get(name, name)}`)")
    return path
