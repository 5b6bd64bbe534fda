"""Model metadata: what every saved model records about how it was made."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from pipelines.core.data import dataset_hash, file_md5, label_share
from pipelines.core.errors import MissingFileError
from pipelines.core.params import Params
from pipelines.core.tools import CommandError, run

METADATA_FILE = "metadata.json"


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
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")


def read_metadata(model_dir: Path | str) -> dict[str, Any]:
    path = Path(model_dir) / METADATA_FILE
    if not path.exists():
        raise MissingFileError(f"{path}: no model metadata; is {model_dir} a trained model?")
    return json.loads(path.read_text(encoding="utf-8"))
