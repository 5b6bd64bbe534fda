"""train stage: fine-tune a transformers encoder on the training split.

Runs on the CPU, one GPU, or several GPUs unchanged: `torchrun --nproc_per_node N -m pipelines
train` or `accelerate launch -m pipelines train` (the Trainer picks the devices up). bf16 mixed
precision where a probe of one batch finds it faster than fp32 on this CPU, or on a GPU with
bf16 (train.precision: auto); intra-op threads wait passively, so a neighbour on the cores
costs its share and no more (train_speed.py). A dev split carved from the training data picks
the best epoch, stops early, and sets the decision: the weight of a blend with the TF-IDF model
(fitted here on the same rows, with the baseline stage's settings) and the threshold; the
holdout is never read here.
"""

from __future__ import annotations

import time
from pathlib import Path

import joblib
import numpy as np

from pipelines.analysis.metrics import macro_f1
from pipelines.core.cli import ParamsOpt, run_as_script
from pipelines.core.data import read_split
from pipelines.core.model_writer import build_metadata, partial_dir, save_model_dir
from pipelines.runtime.canonical import canonical_texts
from pipelines.runtime.classifier import TFIDF_FILE, TransformerClassifier, blend
from pipelines.runtime.metadata import ModelMetadata
from pipelines.runtime.params import PARAMS_FILE, Params, TrainParams, load_params
from pipelines.training.backbone import load_backbone
from pipelines.training.speed import probe_batch, resolve_precision, wait_passively
from pipelines.training.tfidf import build_pipeline

# TF-IDF shares tried for the blend on dev; 0 keeps the transformer alone.
BLEND_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


class _Encoded:
    """Tokenised texts with labels, as the Trainer's data collator expects them."""

    def __init__(self, encodings: dict[str, list], labels: list[int]):
        self.encodings, self.labels = encodings, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {key: values[i] for key, values in self.encodings.items()}
        item["labels"] = self.labels[i]
        return item


def class_weights(label_ids: list[int], n_classes: int) -> np.ndarray:
    """Inverse-frequency weights, normalised so that a balanced set gets all ones."""
    counts = np.bincount(label_ids, minlength=n_classes).astype(float)
    counts[counts == 0] = 1.0
    return len(label_ids) / (n_classes * counts)


def _weighted_loss(weights):
    import torch  # lazy, like transformers below: seconds to import

    weight = torch.tensor(weights, dtype=torch.float32)

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        return torch.nn.functional.cross_entropy(logits.float(), labels,
                                                 weight=weight.to(logits.device))

    return loss


def dev_split(label_ids: list[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, dev) row indices: the same share of every class goes to dev, seeded."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(label_ids)
    dev = []
    for cls in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        dev.extend(rows[: int(round(fraction * len(rows)))])
    dev_rows = np.sort(np.asarray(dev, dtype=int))
    return np.setdiff1d(np.arange(len(labels)), dev_rows), dev_rows


def best_threshold(y_true: np.ndarray, positive_proba: np.ndarray, n_labels: int) -> float:
    """The positive-class probability cut that maximises macro-F1 (two labels only)."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    scores = np.array([macro_f1(y_true, (positive_proba >= t).astype(int), n_labels)
                       for t in grid])
    # Among equally good cuts, the one nearest 0.5: no shift without evidence for it.
    ties = grid[scores == scores.max()]
    return float(ties[np.argmin(np.abs(ties - 0.5))])


def training_args(tp: TrainParams, work_dir: Path, bf16: bool, with_dev: bool):
    import torch
    from transformers import TrainingArguments

    per_epoch = "epoch" if with_dev else "no"
    return TrainingArguments(
        output_dir=str(work_dir / "checkpoints"),
        per_device_train_batch_size=tp.batch_size,
        per_device_eval_batch_size=64,
        num_train_epochs=tp.epochs,
        learning_rate=tp.learning_rate,
        warmup_steps=tp.warmup_ratio,  # below 1: a share of the training steps
        weight_decay=tp.weight_decay,
        lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length",
        bf16=bf16,
        use_cpu=bf16 and not torch.cuda.is_available(),  # the Trainer's bf16 on CPU needs it said
        seed=tp.seed,
        data_seed=tp.seed,
        eval_strategy=per_epoch,
        save_strategy=per_epoch,
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=with_dev,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        logging_strategy="epoch",
        report_to="none",
        disable_tqdm=False,
    )


def train(params: Params, out_dir: Path | str) -> dict:
    """Fine-tune, then save model, tokenizer and metadata.json into out_dir (atomically)."""
    wait_policy = wait_passively()  # first: OpenMP reads it once, when torch loads below
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, set_seed

    started = time.time()
    tp, labels = params.train, list(params.data.labels)
    out_dir = Path(out_dir)
    frame = read_split(params.data.train_file, params.data.max_train_rows)
    set_seed(tp.seed)
    tokenizer, model = load_backbone(tp, labels)
    label_ids = [labels.index(label) for label in frame.label]
    train_rows, dev_rows = dev_split(label_ids, tp.dev_fraction, tp.seed)
    # The texts as the classifier will score them (it canonicalises at inference too).
    texts = canonical_texts(frame.text)
    encodings = dict(tokenizer(texts, truncation=True, max_length=tp.max_length))

    def subset(rows: np.ndarray) -> _Encoded:
        return _Encoded({k: [v[i] for i in rows] for k, v in encodings.items()},
                        [label_ids[i] for i in rows])

    bf16, precision_choice = resolve_precision(
        tp.precision, model, probe_batch(tokenizer, [texts[i] for i in train_rows],
                                         [label_ids[i] for i in train_rows], tp.batch_size,
                                         tp.max_length, tp.seed))
    print(f"train: precision {precision_choice}; OpenMP wait policy {wait_policy}", flush=True)
    args = training_args(tp, partial_dir(out_dir), bf16, with_dev=len(dev_rows) > 0)
    train_labels = [label_ids[i] for i in train_rows]
    loss = (_weighted_loss(class_weights(train_labels, len(labels)))
            if tp.class_weights == "balanced" else None)
    def dev_metrics(prediction) -> dict[str, float]:
        # The labels as the Trainer ordered them: group_by_length reorders evaluation too.
        return {"macro_f1": macro_f1(prediction.label_ids, prediction.predictions.argmax(axis=1),
                                     len(labels))}

    callbacks = ([EarlyStoppingCallback(tp.early_stopping_patience)]
                 if len(dev_rows) and tp.early_stopping_patience else [])
    trainer = Trainer(model=model, args=args, train_dataset=subset(train_rows),
                      eval_dataset=subset(dev_rows) if len(dev_rows) else None,
                      data_collator=DataCollatorWithPadding(tokenizer),
                      compute_loss_func=loss, compute_metrics=dev_metrics, callbacks=callbacks)
    trainer.train()
    if not trainer.is_world_process_zero():
        return {}
    ids = np.asarray(label_ids)
    tfidf = (fit_tfidf(params, [texts[i] for i in train_rows], ids[train_rows])
             if tp.tfidf_blend and len(dev_rows) else None)
    # The model is not saved yet: score dev with the part of its metadata the classifier reads.
    dev_metadata = ModelMetadata.model_construct(labels=labels, version="dev",
                                                 params=tp.model_dump())
    dev = (dev_report(trainer, tokenizer, [texts[i] for i in dev_rows], ids[dev_rows], tfidf, tp,
                      dev_metadata)
           if len(dev_rows) else {})
    decision = dev.get("decision", {"tfidf_weight": 0.0, "threshold": None})
    metadata = build_metadata("transformer", params, tp.model_dump(), frame, started)
    metadata["device"] = str(args.device)
    metadata["precision"] = "bf16" if bf16 else "fp32"
    metadata["precision_choice"] = precision_choice
    metadata["omp_wait_policy"] = wait_policy
    metadata["dev"] = dev
    metadata["decision"] = decision
    if decision["tfidf_weight"]:
        metadata["tfidf"] = params.baseline.model_dump()

    def save_files(work_dir: Path) -> None:
        trainer.save_model(str(work_dir))
        tokenizer.save_pretrained(str(work_dir))
        if decision["tfidf_weight"]:
            joblib.dump(tfidf, work_dir / TFIDF_FILE, compress=3)

    save_model_dir(out_dir, metadata, save_files)
    print(f"train: {metadata['version']} trained on {len(train_rows)} rows ({len(dev_rows)} dev) "
          f"in {metadata['training_seconds']} s on {metadata['device']} ({metadata['precision']});"
          f" dev {dev}; saved to {out_dir}")
    return metadata


def fit_tfidf(params: Params, texts: list[str], label_ids: np.ndarray):
    """The TF-IDF model of the baseline stage (its settings), fitted on the same rows as the
    transformer, so that the dev split judges both on unseen rows."""
    return build_pipeline(params.baseline, list(params.data.labels)).fit(texts, label_ids)


def dev_report(trainer, tokenizer, texts: list[str], label_ids: np.ndarray, tfidf,
               tp: TrainParams, metadata: ModelMetadata) -> dict:
    """The chosen epoch's dev macro-F1, then the decision picked on dev: the TF-IDF blend
    weight and (two labels) the threshold that maximise dev macro-F1."""
    scores = {round(e["epoch"], 2): round(e["eval_macro_f1"], 4)
              for e in trainer.state.log_history if "eval_macro_f1" in e}
    n_labels = len(metadata.labels)
    clf = TransformerClassifier(trainer.model.eval(), tokenizer, metadata)
    transformer = clf.forward_proba(texts)
    report = {"rows": len(texts), "macro_f1_by_epoch": scores,
              "macro_f1": round(macro_f1(label_ids, transformer.argmax(axis=1), n_labels), 4)}
    tfidf_proba = tfidf.predict_proba(texts) if tfidf is not None else None
    weight, threshold, best = choose_decision(label_ids, transformer, tfidf_proba,
                                              tp.tune_threshold, n_labels)
    report["decision"] = {"tfidf_weight": weight, "threshold": threshold}
    report["macro_f1_with_decision"] = round(best, 4)
    return report


def choose_decision(label_ids: np.ndarray, transformer: np.ndarray, tfidf: np.ndarray | None,
                    tune_threshold: bool, n_labels: int) -> tuple[float, float | None, float]:
    """(TF-IDF weight, threshold, dev macro-F1): the best on dev over BLEND_WEIGHTS, and
    over thresholds where asked. Ties keep the smaller weight: no blend without evidence."""
    best: tuple[float, float | None, float] = (0.0, None, -1.0)
    for weight in BLEND_WEIGHTS if tfidf is not None else (0.0,):
        proba = blend(transformer, tfidf, weight)
        threshold = None
        if tune_threshold and n_labels == 2:
            threshold = best_threshold(label_ids, proba[:, 1], n_labels)
            predicted = (proba[:, 1] >= threshold).astype(int)
        else:
            predicted = proba.argmax(axis=1)
        score = macro_f1(label_ids, predicted, n_labels)
        if score > best[2] + 1e-9:
            best = (weight, threshold, score)
    return best


def command(out: Path = Path("models/candidate"), params: ParamsOpt = PARAMS_FILE) -> None:
    """Fine-tune the transformer candidate."""
    train(load_params(params), out)


if __name__ == "__main__":
    run_as_script(command)
