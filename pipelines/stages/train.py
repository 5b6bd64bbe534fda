"""train stage: fine-tune a transformers encoder on the training split.

Runs on the CPU, one GPU, or several GPUs unchanged: `torchrun --nproc_per_node N -m pipelines
train` or `accelerate launch -m pipelines train` (the Trainer picks the devices up).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pipelines.core.cli import ParamsOpt, run_as_script
from pipelines.core.data import read_split
from pipelines.core.metadata import build_metadata, partial_dir, save_model_dir
from pipelines.core.params import PARAMS_FILE, Params, load_params
from pipelines.stages.backbone import load_backbone


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


def train(params: Params, out_dir: Path | str) -> dict:
    """Fine-tune, then save model, tokenizer and metadata.json into out_dir (atomically)."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    started = time.time()
    tp, labels = params.train, list(params.data.labels)
    out_dir = Path(out_dir)
    frame = read_split(params.data.train_file, params.data.max_train_rows)
    set_seed(tp.seed)
    tokenizer, model = load_backbone(tp, labels)
    label_ids = [labels.index(label) for label in frame.label]
    encodings = tokenizer(list(frame.text), truncation=True, max_length=tp.max_length)
    dataset = _Encoded(dict(encodings), label_ids)

    args = TrainingArguments(
        output_dir=str(partial_dir(out_dir) / "checkpoints"),
        per_device_train_batch_size=tp.batch_size,
        num_train_epochs=tp.epochs,
        learning_rate=tp.learning_rate,
        warmup_steps=tp.warmup_ratio,
        weight_decay=tp.weight_decay,
        lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length",
        seed=tp.seed,
        data_seed=tp.seed,
        save_strategy="no",
        logging_strategy="epoch",
        report_to="none",
        disable_tqdm=False,
    )
    loss = (_weighted_loss(class_weights(label_ids, len(labels)))
            if tp.class_weights == "balanced" else None)
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=DataCollatorWithPadding(tokenizer),
                      compute_loss_func=loss)
    trainer.train()
    if not trainer.is_world_process_zero():
        return {}
    metadata = build_metadata("transformer", params, tp.model_dump(), frame, started)
    metadata["device"] = str(args.device)

    def save_files(work_dir: Path) -> None:
        trainer.save_model(str(work_dir))
        tokenizer.save_pretrained(str(work_dir))

    save_model_dir(out_dir, metadata, save_files)
    print(f"train: {metadata['version']} trained on {len(frame)} rows in "
          f"{metadata['training_seconds']} s on {metadata['device']}; saved to {out_dir}")
    return metadata


def command(out: Path = Path("models/candidate"), params: ParamsOpt = PARAMS_FILE) -> None:
    """Fine-tune the transformer candidate."""
    train(load_params(params), out)


if __name__ == "__main__":
    run_as_script(command)
