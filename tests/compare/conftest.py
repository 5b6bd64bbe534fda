"""A throwaway copy of the repository with a small production model, shared by the compare tests.

The copy runs the smoke profile with more rows (baseline models only, a few seconds each) so
that the statistics have the power to tell a broken model from noise. Every eighth text carries a
URL, so that the `url` slice is large enough to be gated.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.core.data import read_split, write_split
from pipelines.core.production import promote
from pipelines.runtime.params import Params, apply_profile, deep_merge, load_params, read_yaml
from pipelines.stages.baseline import train_baseline
from pipelines.stages.evaluate import evaluate
from tests.conftest import copy_repo

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Smoke profile, plus enough rows for the paired statistics (still ~2 s per baseline).
SCENARIO_OVERRIDES = {"data": {"max_train_rows": 3000, "max_holdout_rows": None},
                      "compare": {"bootstrap_samples": 500, "drift_sample_rows": 1500}}
URL = "https://t.co/x1y2z3"


def _env() -> dict[str, str]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1")
    env.pop("CI", None)
    return env


def sh(cmd: list[str], cwd: Path, check: bool = True, **env) -> subprocess.CompletedProcess:
    """Run a command in the workspace with the project's environment (CI unset unless given)."""
    result = subprocess.run(cmd, cwd=cwd, env=_env() | env, capture_output=True, text=True,
                            timeout=300, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


def copy_repository(dest: Path) -> None:
    """A fresh git copy of the working tree with data.dvc resolved, as `make data` does."""
    copy_repo(dest)
    sh([sys.executable, "-m", "pipelines", "data", "pull"], dest)


def with_urls(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    every_eighth = np.arange(len(frame)) % 8 == 3
    frame.loc[every_eighth, "text"] = frame.loc[every_eighth, "text"] + f" {URL}"
    return frame


@dataclass
class Workspace:
    """The copied repository, its params, and baseline models trained on data variants."""

    root: Path
    params: Params
    models: dict[str, Path] = field(default_factory=dict)

    @contextlib.contextmanager
    def inside(self):
        with contextlib.chdir(self.root):
            yield self

    def train(self, name: str, transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
              **baseline_overrides) -> Path:
        """A baseline trained on the workspace's training data after transform (cached)."""
        if name in self.models:
            return self.models[name]
        with self.inside():
            params = self.params
            if transform is not None:
                variant = Path("variants") / f"{name}.csv"
                write_split(transform(read_split(params.data.train_file)), variant)
                params = params.model_copy(update={"data": params.data.model_copy(
                    update={"train_file": str(variant)})})
            if baseline_overrides:
                params = params.model_copy(update={"baseline": params.baseline.model_copy(
                    update=baseline_overrides)})
            out = self.root / "trained" / name
            train_baseline(params, out)
        self.models[name] = out
        return out

    def params_with(self, **sections) -> Params:
        """The workspace params with some sections' keys replaced."""
        raw = deep_merge(read_yaml(self.root / "params.yaml"), sections)
        path = self.root / "scratch_params.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        return load_params(path)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Workspace:
    """A repository copy whose data carries URLs, with a baseline promoted to production."""
    root = tmp_path_factory.mktemp("compare") / "repo"
    root.mkdir()
    copy_repository(root)
    with contextlib.chdir(root):
        for split in ("data/train.csv", "data/holdout.csv"):
            write_split(with_urls(read_split(split)), split)
        sh(["dvc", "add", "--quiet", "data"], root)
        apply_profile("profiles/smoke.yaml")
        raw = deep_merge(read_yaml(Path("params.yaml")), SCENARIO_OVERRIDES)
        Path("params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        ws = Workspace(root, load_params("params.yaml"))
        production = ws.train("production")
        evaluate(ws.params, "production", production, "reports/metrics/production.json",
                 "reports/plots/production")
        promote(production, "reports/metrics/production.json",
                _holdout_md5(ws.params))
    return ws


def _holdout_md5(params: Params) -> str:
    from pipelines.core.data import file_md5

    return file_md5(params.data.holdout_file)
