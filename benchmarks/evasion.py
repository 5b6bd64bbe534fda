"""What the text canonicaliser buys against evasion, on one saved model (by hand, not in tests).

    python benchmarks/evasion.py models/production
    python benchmarks/evasion.py models/candidate --json reports/benchmark/evasion.json

Scores the model twice on the frozen holdout, with the canonicaliser (as training, evaluation and
the service run it) and without it (as before it existed), and prints per disguise of the
evasion suite (pipelines/analysis/behaviour.py) the share of offensive holdout texts the model
catches that it no longer flags once disguised; then the offensive score of one example
under each disguise. The weights are the same in both runs: only the inference input differs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.analysis.behaviour import EVASIONS, run_evasion_checks
from pipelines.analysis.scoring import load_holdout
from pipelines.runtime.classifier import load_classifier
from pipelines.runtime.params import PARAMS_FILE, load_params

EXAMPLE = "you are a stupid idiot"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model directory (train or train-baseline)")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    parser.add_argument("--sample", type=int, default=None,
                        help="offensive texts per disguise (default: evaluate.behaviour)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    params = load_params(args.params)
    classifier = load_classifier(args.model, batch_size=params.evaluate.batch_size)
    frame, y = load_holdout(params.data)
    texts = list(frame.text)
    sample = args.sample or params.evaluate.behaviour.sample_size
    positive = len(classifier.labels) - 1
    runs = {}
    for canonical in (False, True):
        classifier.canonical = canonical
        proba = classifier.predict_proba(texts)
        runs[canonical] = {
            "evasion": run_evasion_checks(classifier, texts, y, proba, sample),
            "example": {name: round(float(classifier.predict_proba([disguise(EXAMPLE)])
                                          [0, positive]), 4)
                        for name, disguise in {"plain": str, **EVASIONS}.items()},
        }
    before, after = runs[False], runs[True]
    print(f"{classifier.version} ({classifier.metadata.kind}), {len(texts)} holdout texts; "
          f"flip rate: share of the offensive texts it catches that it misses once disguised\n")
    print(f"| disguise | score of {EXAMPLE!r} without → with | n | flip rate without → with |")
    print("|---|---:|---:|---:|")
    for name in before["example"]:
        check = before["evasion"].get(f"evasion_{name}")
        flips = (f"{check['n']} | {check['flip_rate']:.3f} → "
                 f"{after['evasion'][f'evasion_{name}']['flip_rate']:.3f}" if check else " | ")
        print(f"| {name} | {before['example'][name]:.3f} → {after['example'][name]:.3f} | "
              f"{flips} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": classifier.version, "example": EXAMPLE,
                                         "without_canonicaliser": runs[False],
                                         "with_canonicaliser": runs[True]}, indent=2),
                             encoding="utf-8")


if __name__ == "__main__":
    main()
