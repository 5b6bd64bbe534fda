"""Writing a trained model: its metadata.json (data hash, params digest, git commit) and the
directory that replaces the old model only once complete."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.core.data import dataset_hash, file_md5, label_share
from pipelines.core.tools import CommandError, run
from pipelines.runtime.metadata import METADATA_FILE, ModelMetadata
from pipelines.runtime.params import Params


def git_commit() -> str:
    try:
        return run(["git", "rev-parse", "HEAD"]).strip()
    except CommandError:  # not a git checkout (a copied tree): the model is still usable
        return "unknown"


def params_digest(section: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(section, sort_keys=True).encode()).hexdigest()


def build_metadata(kind: str, params: Params, section: dict[str, Any], train_frame,
                   started: float) -> dict[str, Any]:
    """The metadata.json of a freshly trained model (version = kind, data hash, params hash)."""
    data_md5 = dataset_hash()
    digest = params_digest({"data": params.data.model_dump(), "model": section})
    return {
        "kind": kind,
        "version": f"{kind}-{data_md5[:8]}-{digest[:8]}",
        "labels": list(params.data.labels),
        "dataset": {
            "md5": data_md5,
            "train_rows": len(train_frame),
            "label_share": label_share(train_frame, list(params.data.labels)),
        },
        "holdout_md5": file_md5(params.data.holdout_file),
        "params": section,
        "git_commit": git_commit(),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "training_seconds": round(time.time() - started, 1),
    }


def write_metadata(model_dir: Path, metadata: dict[str, Any]) -> None:
    ModelMetadata.model_validate(metadata)  # never save a model its own loader would refuse
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")


def partial_dir(out_dir: Path) -> Path:
    """Where a model directory is written before it replaces out_dir (<out_dir>.partial)."""
    return out_dir.with_name(out_dir.name + ".partial")


def save_model_dir(out_dir: Path | str, metadata: dict[str, Any],
                   save_files: Callable[[Path], None]) -> Path:
    """Write a model directory atomically: save_files(dir) and metadata.json fill the partial
    directory, which replaces out_dir only once complete (a failed run keeps the old model)."""
    out_dir = Path(out_dir)
    work_dir = partial_dir(out_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    save_files(work_dir)
    write_metadata(work_dir, metadata)
    shutil.rmtree(out_dir, ignore_errors=True)
    work_dir.rename(out_dir)
    return out_dir
