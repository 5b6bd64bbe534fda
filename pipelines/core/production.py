"""The production pointer (models/production.yaml), its DVC-tracked weights, and promotion."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

from pipelines.core.data import DataError
from pipelines.core.tools import dvc
from pipelines.core.versions import read_tracked_file
from pipelines.runtime.errors import PipelineError
from pipelines.runtime.metadata import DatasetVersion, ModelMetadata, is_model_dir
from pipelines.runtime.records import Record, parse_record

POINTER = Path("models/production.yaml")
WEIGHTS = Path("models/production")
WEIGHTS_POINTER = WEIGHTS.with_suffix(".dvc")
# What a promotion rewrites (and a revert puts back): the pointer and the weights' .dvc file.
PROMOTION_FILES = (POINTER.as_posix(), WEIGHTS_POINTER.as_posix())
# A retrain of branch B proposes its model on branch promote/B, one pull request per B.
PROMOTION_PREFIX = "promote/"
HEADER = (
    "# The model serving production; promotion pull requests rewrite this file\n"
    "# (`python -m pipelines promote`). Its weights are models/production/, tracked by\n"
    "# models/production.dvc: `dvc pull models/production.dvc` fetches them.\n"
    "# version: null means no production model yet: the first candidate is judged on floors only.\n"
)


def promotion_branch(source_branch: str) -> str:
    """The branch a retrain of source_branch pushes its promotion commit to."""
    return f"{PROMOTION_PREFIX}{source_branch}"


class ProductionError(PipelineError):
    """The production pointer or its weights are missing, inconsistent or out of date."""


class ProductionRecord(Record):
    """The pointer's content (models/production.yaml), keys in the order promote writes them."""

    version: str
    kind: Literal["baseline", "transformer"]
    dataset: DatasetVersion
    holdout_md5: str
    params: dict[str, Any]
    git_commit: str
    metrics: dict[str, Any]  # evaluate's headline metrics, slices and behaviour on the holdout
    bento_tag: str | None
    image: str | None


def read_pointer(pointer: Path | str = POINTER) -> ProductionRecord | None:
    """The production record, or None when the pointer says there is no production model."""
    pointer = Path(pointer)
    if not pointer.exists():
        raise ProductionError(
            f"{pointer}: production pointer not found. Restore it with "
            f"`git checkout -- {pointer}`, or write `version: null` to it to judge the first "
            "candidate on absolute floors only.")
    try:
        record = yaml.safe_load(pointer.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ProductionError(f"{pointer}: not valid YAML: {e}") from e
    if not isinstance(record, dict) or "version" not in record:
        raise ProductionError(f"{pointer}: expected a mapping with a `version` key "
                              "(null when there is no production model)")
    if record["version"] is None:
        return None
    return parse_record(ProductionRecord, record, pointer, "production pointer (rewrite it "
                        "with `python -m pipelines promote`)", ProductionError)


def check_weights(record: ProductionRecord, weights: Path | str = WEIGHTS
                  ) -> tuple[Path, ModelMetadata]:
    """The weights directory and its metadata, after checking it holds the version the pointer
    names."""
    weights = Path(weights)
    if not is_model_dir(weights):
        raise ProductionError(
            f"{weights}: production weights for {record.version} are missing. "
            f"Fetch them with `dvc pull {weights}.dvc` (from the DVC remote).")
    metadata = ModelMetadata.load(weights)
    if metadata.version != record.version:
        raise ProductionError(
            f"{weights} holds {metadata.version} but the pointer names {record.version}: "
            f"run `dvc pull {weights}.dvc` or `dvc checkout {weights}.dvc`.")
    return weights, metadata


def check_holdout(record: ProductionRecord, holdout_md5: str, holdout_file: str) -> None:
    """Refuse to compare on a holdout other than the one production was scored on."""
    if record.holdout_md5 != holdout_md5:
        raise ProductionError(
            f"{holdout_file} changed since production ({record.version}) was scored: its md5 "
            f"is {holdout_md5}, the pointer records {record.holdout_md5}. The holdout is "
            "frozen; restore it. To move to a new holdout on purpose, re-score production on it "
            "and promote it again: `python -m pipelines evaluate production models/production "
            "reports/metrics/production.json reports/plots/production && python -m pipelines "
            "promote models/production reports/metrics/production.json`.")


def read_dataset_file(dataset_md5: str, relpath: str, root: Path | str = ".") -> pd.DataFrame:
    """One file of a past data version, read from the DVC cache or remote by the data's md5."""
    try:
        raw = read_tracked_file(dataset_md5, relpath, root)
    except DataError as e:
        raise ProductionError(f"data version {dataset_md5}: {e}") from e
    return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, encoding="utf-8")


def production_training_rows(dataset: DatasetVersion, train_file: str,
                              data_pointer: Path | str = "data.dvc") -> pd.DataFrame:
    """The training rows production learned from, read through DVC by its data version's md5."""
    data_pointer = Path(data_pointer)
    pointer = yaml.safe_load(data_pointer.read_text(encoding="utf-8"))
    tracked = data_pointer.parent / pointer["outs"][0]["path"]
    try:
        relpath = Path(train_file).resolve().relative_to(tracked.resolve())
    except ValueError:
        raise ProductionError(f"{train_file} is not inside {tracked}/, the folder "
                              f"{data_pointer} tracks") from None
    frame = read_dataset_file(dataset.md5, relpath.as_posix(), data_pointer.parent)
    # read_split caps with head(), so production learned from the first train_rows rows.
    return frame.head(dataset.train_rows)


def build_record(metadata: ModelMetadata, metrics: dict[str, Any], holdout_md5: str,
                 bento_tag: str | None, image: str | None) -> ProductionRecord:
    """The pointer's content for a model, from its metadata and its holdout metrics."""
    if metrics.get("model_version") != metadata.version:
        raise ProductionError(f"metrics are for {metrics.get('model_version')}, the model is "
                              f"{metadata.version}: evaluate the model first")
    headline = ("n", "macro_f1", "accuracy", "roc_auc", "pr_auc", "calibration_error")
    return ProductionRecord(
        version=metadata.version, kind=metadata.kind, dataset=metadata.dataset,
        holdout_md5=holdout_md5, params=metadata.params, git_commit=metadata.git_commit,
        metrics={k: metrics.get(k) for k in headline}
        | {"slices": metrics.get("slices", {}), "behaviour": metrics.get("behaviour", {})},
        bento_tag=bento_tag, image=image)


def pointer_text(record: ProductionRecord) -> str:
    """models/production.yaml as promote writes it: the header, then the record's keys."""
    return HEADER + yaml.safe_dump(record.model_dump(mode="json"), sort_keys=False)


def promote(model_dir: Path | str, metrics_path: Path | str, holdout_md5: str,
            bento_tag: str | None = None,
            image: str | None = None, pointer: Path | str = POINTER,
            weights: Path | str = WEIGHTS, track: bool = True, push: bool = False
            ) -> ProductionRecord:
    """Make model_dir the production model: copy its weights, rewrite the pointer, dvc add/push.

    holdout_md5 is the md5 of the holdout the metrics were computed on.
    """
    model_dir, pointer, weights = Path(model_dir), Path(pointer), Path(weights)
    metadata = ModelMetadata.load(model_dir)
    metrics = json.loads(Path(metrics_path).read_text(encoding="utf-8"))
    record = build_record(metadata, metrics, holdout_md5, bento_tag, image)
    if model_dir.resolve() != weights.resolve():
        staging = weights.with_name(weights.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(model_dir, staging)
        shutil.rmtree(weights, ignore_errors=True)
        staging.rename(weights)
    if track:
        dvc("add", "--quiet", str(weights), error=ProductionError)
        if push:
            dvc("push", "--quiet", f"{weights}.dvc", error=ProductionError)
    pointer.write_text(pointer_text(record), encoding="utf-8")
    return record
