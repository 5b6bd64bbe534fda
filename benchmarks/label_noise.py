"""Benchmark the validate stage's label_noise rule against known label flips (run by hand).

    .venv/bin/python benchmarks/label_noise.py [--production-rows 9000]

In a throwaway copy of the repository, production's data version and model become the first
--production-rows rows of the bundled training split; the new data version adds the rest (same
source). Each case flips some of the new labels, runs `python -m pipelines.stages.validate` and
prints the estimated share of wrong labels (with its interval) next to the true share, whether the
rule flagged it, and the stage's wall and CPU time (CPU time is the steadier figure on a shared
machine). The last row reruns the 30 % case with the rule off: the stage's cost without it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.core.production import ProductionRecord, pointer_text
from pipelines.runtime.metadata import ModelMetadata

ROOT = Path(__file__).resolve().parent.parent
SWAP = {"offensive": "not-offensive", "not-offensive": "offensive"}


def sh(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(cwd), HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        sys.exit(f"{cmd} failed:\n{result.stdout}\n{result.stderr}")
    return result


def carve(repo: Path, production_rows: int) -> pd.DataFrame:
    """Make production's data and model the first rows; return the full split (the new version)."""
    listed = sh(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
    for rel in filter(None, listed.stdout.split("\0")):
        if (ROOT / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel)
    sh(["git", "init", "-q"], repo)
    sh([sys.executable, "-m", "pipelines", "data", "pull"], repo)
    full = pd.read_csv(repo / "data/train.csv", dtype=str, keep_default_na=False)
    full.head(production_rows).to_csv(repo / "data/train.csv", index=False)
    sh(["dvc", "add", "--quiet", "data"], repo)
    sh([sys.executable, "-m", "pipelines.stages.baseline", "--out", "models/production"], repo)
    metadata = ModelMetadata.load(repo / "models/production")
    record = ProductionRecord(version=metadata.version, kind=metadata.kind,
                              dataset=metadata.dataset, holdout_md5=metadata.holdout_md5,
                              params=metadata.params, git_commit=metadata.git_commit,
                              metrics={}, bento_tag=None, image=None)
    (repo / "models/production.yaml").write_text(pointer_text(record))
    return full


def cases(full: pd.DataFrame, production_rows: int) -> dict[str, list[int]]:
    new = np.arange(production_rows, len(full))
    rng = np.random.default_rng(1)
    hashtag = full.text.str.contains(r"#\w+", regex=True)
    return {
        "clean": [],
        "random 10 %": list(rng.choice(new, int(0.1 * len(new)), replace=False)),
        "random 30 %": list(rng.choice(new, int(0.3 * len(new)), replace=False)),
        "offensive+hashtag -> not": [i for i in new
                                     if hashtag[i] and full.label[i] == "offensive"],
    }


def validate(repo: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one validate run (the stage's subprocess)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    sh([sys.executable, "-m", "pipelines.stages.validate", "--report", "v.json"], repo,
       check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (time.monotonic() - started,
            after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--production-rows", type=int, default=9000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        full = carve(repo, args.production_rows)
        hashtag = full.text.map(lambda t: bool(re.search(r"#\w+", t)))
        new = np.arange(args.production_rows, len(full))
        print(f"{len(new)} new rows on top of production's {args.production_rows}")
        print(f"{'case':26} {'true':>7} {'estimate [interval]':>26} {'hashtag true':>13} "
              f"{'hashtag estimate':>26} flagged  validate")
        runs = list(cases(full, args.production_rows).items())
        for name, rows in runs + [("random 30 %, rule off", runs[2][1])]:
            frame = full.copy()
            frame.loc[rows, "label"] = frame.loc[rows, "label"].map(SWAP)
            frame.to_csv(repo / "data/train.csv", index=False)
            if name.endswith("rule off"):
                params = (repo / "params.yaml").read_text()
                (repo / "params.yaml").write_text(params.replace("label_noise: error",
                                                                 "label_noise: 'off'"))
            wall, cpu = validate(repo)
            noise = json.loads((repo / "v.json").read_text())["label_noise"]
            est = noise.get("estimate") or {}
            tag = noise["scorers"][est["scorer"]]["slices"].get("hashtag", {}) if est else {}

            def fmt(e: dict) -> str:
                return f"{e['share']:.3f} [{e['low']:.3f}, {e['high']:.3f}]" if e else "-"

            print(f"{name:26} {len(rows) / len(new):7.3f} {fmt(est):>26} "
                  f"{np.isin(new[hashtag[new]], rows).mean():13.3f} {fmt(tag):>26} "
                  f"{'yes' if noise['flagged'] else 'no':7}  {wall:5.1f} s wall, {cpu:4.1f} s CPU")


if __name__ == "__main__":
    main()
