"""Benchmark: wall time of `compare` (both models scored, statistics, Evidently reports, PR body)
on the default holdout, next to the time of evaluating the candidate alone in the same run.

Run by hand from the repository root, pinned to 2 cores:
    taskset -c 0,1 python benchmarks/compare_benchmark.py [--candidate models/candidate]
Target: compare + reports <= 120 s on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from pipelines.analysis.scoring import load_holdout, score_model
from pipelines.runtime.classifier import load_classifier
from pipelines.runtime.params import load_params
from pipelines.stages.compare import compare_to_production


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", type=Path, default=Path("models/candidate"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params("params.yaml")

    started = time.perf_counter()
    classifier = load_classifier(args.candidate, batch_size=params.evaluate.batch_size)
    frame, y = load_holdout(params.data)
    score_model(classifier, frame, y, list(params.data.labels), params.evaluate)
    evaluate_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        decision = compare_to_production(params, args.candidate, out)
        compare_s = time.perf_counter() - started

    print(f"holdout rows: {len(frame)}; candidate {classifier.version}; "
          f"production {decision.production_version}; torch threads {args.threads}")
    print(f"evaluate candidate alone : {evaluate_s:7.1f} s")
    print(f"compare + reports        : {compare_s:7.1f} s  "
          f"(ratio to evaluate {compare_s / evaluate_s:.2f}x; target <= 120 s: "
          f"{'met' if compare_s <= 120 else 'MISSED'})")
    print(f"verdict: {decision.verdict}")


if __name__ == "__main__":
    main()
