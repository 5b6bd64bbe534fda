"""The dataset: its tidy CSV format, the data.dvc pointer and its content hash."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from pipelines.runtime.errors import PipelineError

if TYPE_CHECKING:  # pandas costs the service's cold start a second and it never reads a split
    import pandas as pd

COLUMNS = ["id", "text", "label", "source"]
DATA_POINTER = Path("data.dvc")


class DataError(PipelineError):
    """The data pointer or a data file is missing, unresolvable or malformed."""


# Control characters other than tab and line breaks: invisible in review, and ESC sequences
# rewrite a terminal when a row is printed. validate rejects them; the importer removes them.
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}


def _forbidden_control(c: str) -> bool:
    return unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS


def control_characters(text: str) -> list[str]:
    """The control characters a text may not contain, as U+XXXX, sorted."""
    return sorted({f"U+{ord(c):04X}" for c in text if _forbidden_control(c)})


def without_control_characters(text: str) -> str:
    return "".join(c for c in text if not _forbidden_control(c))


def normalise(text: str) -> str:
    """Case, accents, punctuation and spacing folded away: what makes two texts 'the same'."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(text.split())


def label_share(frame: pd.DataFrame, labels: list[str]) -> dict[str, float]:
    """Share of each label in a split, rounded (recorded in model metadata, checked by validate)."""
    counts = frame.label.value_counts()
    total = max(len(frame), 1)
    return {label: round(float(counts.get(label, 0)) / total, 4) for label in labels}


def read_split(path: Path | str, max_rows: int | None = None) -> pd.DataFrame:
    """Read one split as strings, keeping empty cells as empty strings (validate judges them)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found. Resolve the data pointer first: `make data`.")
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    return frame.head(max_rows) if max_rows else frame


def write_split(frame: pd.DataFrame, path: Path | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame[COLUMNS].to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")
    tmp.replace(path)


def file_md5(path: Path | str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_hash(pointer: Path | str = DATA_POINTER) -> str:
    """DVC's content hash of the data directory, as recorded in the pointer file."""
    pointer = Path(pointer)
    if not pointer.exists():
        raise DataError(
            f"{pointer}: not found. Track your data with `dvc add data` "
            "(docs/pipeline.md, 'Your own data')."
        )
    try:
        outs = yaml.safe_load(pointer.read_text(encoding="utf-8"))["outs"]
        return str(outs[0]["md5"]).removesuffix(".dir")
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as e:
        raise DataError(
            f"{pointer}: not a DVC pointer with an outs[0].md5 entry ({e}). "
            "Restore it with `git checkout -- data.dvc` or recreate it with `dvc add data`."
        ) from e


def import_tweeteval(source_dir: Path | str, out_dir: Path | str) -> dict[str, int]:
    """Convert TweetEval's line-per-text files into the tidy CSVs, cleaning what validate forbids.

    The validation split becomes the frozen holdout. Control characters are removed from texts;
    training rows whose (normalised) text appears in the holdout, texts carrying conflicting
    labels and duplicates are dropped.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    names = (source_dir / "mapping.txt").read_text(encoding="utf-8").split("\n")
    label_names = dict(line.split("\t") for line in names if line.strip())

    import pandas as pd

    def load(split: str) -> pd.DataFrame:
        texts = (source_dir / f"{split}_text.txt").read_text(encoding="utf-8").split("\n")
        labels = (source_dir / f"{split}_labels.txt").read_text(encoding="utf-8").split()
        # TweetEval hate carries stray C1 controls (U+0081, U+009D: mis-decoded bytes).
        texts = [without_control_characters(t).strip() for t in texts[: len(labels)]]
        frame = pd.DataFrame({"text": texts, "label": [label_names[x] for x in labels]})
        frame["source"] = "tweeteval"
        return frame


    train, holdout = load("train"), load("val")
    train["key"], holdout["key"] = train.text.map(normalise), holdout.text.map(normalise)
    counts = {"train_in": len(train)}
    train = train[~train.key.isin(set(holdout.key))]
    counts["dropped_holdout_leak"] = counts["train_in"] - len(train)
    conflicting = train.groupby("key").label.nunique()
    conflicting = set(conflicting[conflicting > 1].index)
    before = len(train)
    train = train[~train.key.isin(conflicting)]
    counts["dropped_conflicting"] = before - len(train)
    before = len(train)
    train = train.drop_duplicates("key")
    counts["dropped_duplicates"] = before - len(train)
    holdout = holdout.drop_duplicates("key")
    train = train.reset_index(drop=True)
    holdout = holdout.reset_index(drop=True)
    train["id"] = [f"train-{i:06d}" for i in range(len(train))]
    holdout["id"] = [f"holdout-{i:06d}" for i in range(len(holdout))]
    write_split(train, out_dir / "train.csv")
    write_split(holdout, out_dir / "holdout.csv")
    counts.update(train=len(train), holdout=len(holdout))
    return counts
