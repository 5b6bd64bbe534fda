"""Model metadata: what every saved model records about how it was made, and its reader
(the writer, which hashes the data and asks git, is pipelines/core/model_writer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict

from pipelines.runtime.errors import MissingFileError
from pipelines.runtime.records import Record, parse_record, read_json

METADATA_FILE = "metadata.json"


class DatasetVersion(Record):
    """The data version a model learned from (also recorded by the production pointer)."""

    md5: str
    train_rows: int
    label_share: dict[str, float]


class BlendDecision(Record):
    """What train chose on the dev split: the TF-IDF blend weight and the decision threshold."""

    tfidf_weight: float = 0.0
    threshold: float | None = None


class ModelMetadata(Record):
    """A saved model's metadata.json: how it was made and how it scores (read once per load)."""

    # A key a later version of train adds must not make this model unloadable.
    model_config = ConfigDict(extra="allow")

    kind: Literal["baseline", "transformer"]
    version: str
    labels: list[str]
    dataset: DatasetVersion
    holdout_md5: str
    params: dict[str, Any]
    git_commit: str
    trained_at: str
    training_seconds: float
    # transformers only (the train stage), in the order it writes them:
    device: str | None = None
    precision: str | None = None
    dev: dict[str, Any] | None = None
    decision: BlendDecision | None = None
    tfidf: dict[str, Any] | None = None  # the blended TF-IDF model's settings

    @classmethod
    def load(cls, model_dir: Path | str) -> ModelMetadata:
        """The metadata of the model in model_dir; a missing or malformed file names itself."""
        path = Path(model_dir) / METADATA_FILE
        if not path.exists():
            raise MissingFileError(f"{path}: no model metadata; is {model_dir} a trained model?")
        return parse_record(cls, read_json(path, "model metadata"), path, "model metadata")


def is_model_dir(path: Path | str) -> bool:
    """Whether path holds a saved model (its metadata file)."""
    return (Path(path) / METADATA_FILE).is_file()
