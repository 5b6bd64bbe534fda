"""Benchmark the training pipeline on the bundled data (run by hand, not in tests).

    .venv/bin/python benchmarks/pipeline.py [--profile profiles/smoke.yaml]

In a throwaway copy of the repository: times `dvc repro` from scratch through evaluation, then a
`dvc repro` with nothing changed, and prints holdout macro-F1 of the transformer and of the
TF-IDF baseline (the baseline is the in-run reference the transformer is compared against).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.runtime.metadata import ModelMetadata

ROOT = Path(__file__).resolve().parent.parent


def sh(cmd: list[str], cwd: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(cwd), HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    started = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="profile laid over params.yaml, e.g. the smoke one")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-")) / "repo"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in listed:
        if (ROOT / rel).is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, work / rel)
    sh(["git", "init", "-q"], work)
    sh([sys.executable, "-m", "pipelines", "data", "pull"], work)
    if args.profile:
        sh([sys.executable, "-m", "pipelines", "profile", args.profile], work)
    full = sh(["dvc", "repro", "--force"], work)
    noop = sh(["dvc", "repro"], work)
    metrics = {p.stem: json.loads(p.read_text()) for p in (work / "reports/metrics").glob("*.json")}
    cand, base = metrics["candidate"]["macro_f1"], metrics["baseline"]["macro_f1"]
    train_s = ModelMetadata.load(work / "models/candidate").training_seconds
    print(f"\nmachine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    print(f"dvc repro from scratch through evaluation: {full:7.1f} s "
          f"(transformer training {train_s:.0f} s)")
    print(f"dvc repro with nothing changed:            {noop:7.1f} s")
    print(f"holdout macro-F1 transformer {cand:.4f}  baseline {base:.4f}  "
          f"(ratio {cand / base:.3f})")
    print(f"outputs left in {work}")


if __name__ == "__main__":
    main()
