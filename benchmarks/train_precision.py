"""fp32 against bf16 mixed precision for the train stage, in one run (by hand, not in tests).

    .venv/bin/python benchmarks/train_precision.py --rows 1536 --epochs 1

Trains the configured backbone twice on the same first --rows training rows (dev carved from
them as train.dev_fraction says), once per precision, and prints wall time and dev macro-F1 of
each and the speed-up. The holdout is not read. Extrapolate the full run from the ratio. Then
runs the train stage's precision probe (both precisions, whatever the CPU's kernels) and says
whether its choice agrees with the full runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from pipelines.runtime.params import PARAMS_FILE, load_params
from pipelines.stages.train import train


def probe(params) -> dict:
    """The train stage's probe on this configuration, timing both precisions."""
    from pipelines.core.data import read_split
    from pipelines.runtime.canonical import canonical_texts
    from pipelines.training.backbone import load_backbone
    from pipelines.training.speed import probe_batch, probe_precision

    tp, labels = params.train, list(params.data.labels)
    frame = read_split(params.data.train_file, params.data.max_train_rows)
    tokenizer, model = load_backbone(tp, labels)
    batch = probe_batch(tokenizer, canonical_texts(frame.text),
                        [labels.index(label) for label in frame.label], tp.batch_size,
                        tp.max_length, tp.seed)
    return probe_precision(model, batch, candidates=("fp32", "bf16"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    parser.add_argument("--rows", type=int, default=1536)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmark/train_precision.json"))
    args = parser.parse_args()
    base = load_params(args.params)
    runs = {}
    for precision in ("fp32", "bf16"):
        params = base.model_copy(update={
            "data": base.data.model_copy(update={"max_train_rows": args.rows}),
            "train": base.train.model_copy(update={"precision": precision, "epochs": args.epochs,
                                                   "early_stopping_patience": 0,
                                                   "tune_threshold": False,
                                                   "tfidf_blend": False})})
        work = Path(tempfile.mkdtemp(prefix="train-precision-"))
        started = time.perf_counter()
        metadata = train(params, work / "model")
        shutil.rmtree(work, ignore_errors=True)
        runs[precision] = {"seconds": round(time.perf_counter() - started, 1),
                           "dev_macro_f1": metadata["dev"].get("macro_f1")}
    speedup = runs["fp32"]["seconds"] / runs["bf16"]["seconds"]
    probed = probe(params)
    result = {"rows": args.rows, "epochs": args.epochs, "runs": runs, "speedup": round(speedup, 2),
              "probe": probed}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for precision, run in runs.items():
        print(f"{precision}: {run['seconds']} s, dev macro-F1 {run['dev_macro_f1']}")
    print(f"bf16 speed-up: {speedup:.2f}x ({args.rows} rows, {args.epochs} epoch(s))")
    faster = "bf16" if speedup > 1 else "fp32"
    print(f"probe: step seconds {probed['step_seconds']} -> {probed['chosen']} "
          f"({'agrees' if probed['chosen'] == faster else 'differs'}: {faster} trained faster)")


if __name__ == "__main__":
    main()
