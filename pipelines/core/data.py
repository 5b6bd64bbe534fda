"""The dataset: its tidy CSV format, the data.dvc pointer and its content hash."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

import pandas as pd
import yaml
from dvc.exceptions import DvcException
from dvc.repo import Repo
from dvc_data.hashfile.hash_info import HashInfo
from dvc_data.hashfile.tree import Tree

from pipelines.core.errors import PipelineError
from pipelines.core.tools import CommandError, dvc, run

COLUMNS = ["id", "text", "label", "source"]
DATA_POINTER = Path("data.dvc")


class DataError(PipelineError):
    """The data pointer or a data file is missing, unresolvable or malformed."""


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
            f"{pointer}: not found. Track your data with `dvc add data` (see README, 'Your data')."
        )
    try:
        outs = yaml.safe_load(pointer.read_text(encoding="utf-8"))["outs"]
        return str(outs[0]["md5"]).removesuffix(".dir")
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as e:
        raise DataError(
            f"{pointer}: not a DVC pointer with an outs[0].md5 entry ({e}). "
            "Restore it with `git checkout -- data.dvc` or recreate it with `dvc add data`."
        ) from e


def default_remote(root: Path | str = ".") -> tuple[str | None, str | None]:
    """Name and URL of the default DVC remote (a local remote's URL is an absolute path)."""
    with Repo(str(root)) as repo:
        name = repo.config["core"].get("remote")
        remote = repo.config["remote"].get(name) if name else None
        return name, (remote or {}).get("url")


def in_repo_remote(root: Path | str = ".") -> Path | None:
    """The default DVC remote's folder (absolute) when it lies inside the repository: the demo
    remote, whose objects are committed with the pointers that name them."""
    root = Path(root).resolve()
    _, url = default_remote(root)
    if not url or "://" in url:
        return None
    path = Path(url).resolve()
    return path if path.is_relative_to(root) else None


def _object_dbs(repo: Repo) -> list:
    """Where DVC keeps content-addressed objects: the local cache, then the default remote."""
    return [repo.cache.local] + ([repo.cloud.get_remote_odb()]
                                 if repo.config["core"].get("remote") else [])


def _load_dir(odbs: list, dir_md5: str) -> Tree | None:
    for odb in odbs:
        try:
            return Tree.load(odb, HashInfo("md5", f"{dir_md5}.dir"))
        except FileNotFoundError:
            continue
    return None


def read_tracked_file(dir_md5: str, relpath: str, root: Path | str = ".") -> bytes:
    """One file of a version of a DVC-tracked directory (named by its md5), read from the DVC
    cache or the default remote without checking anything out."""
    try:
        with Repo(str(root)) as repo:
            odbs = _object_dbs(repo)
            tree = _load_dir(odbs, dir_md5)
            if tree is None:
                raise DataError(f"directory version {dir_md5} is in neither the DVC cache nor "
                                "the remote; `dvc fetch` it from the commit that produced it")
            entry = tree.get(tuple(relpath.split("/")))
            if entry is None:
                files = sorted("/".join(key) for key, _, _ in tree)
                raise DataError(f"directory version {dir_md5} has no {relpath} (it has {files})")
            for odb in odbs:
                obj = odb.get(entry[1].value)
                if obj.fs.exists(obj.path):
                    return obj.fs.read_bytes(obj.path)
    except DvcException as e:
        raise DataError(f"cannot read {relpath} of directory version {dir_md5}: {e}") from e
    raise DataError(f"{relpath} of directory version {dir_md5} is missing from the DVC cache "
                    "and remote")


def remote_objects(pointer: Path | str, root: Path | str = ".") -> list[Path]:
    """The default remote's files holding the directory a *.dvc pointer tracks: its manifest and
    every file in it (the in-repo remote commits them next to the pointer)."""
    with Repo(str(root)) as repo:
        remote = repo.cloud.get_remote_odb()
        dir_hash = repo.stage.load_one(str(pointer)).outs[0].hash_info
        tree = Tree.load(remote, dir_hash)
        return [Path(remote.oid_to_path(oid))
                for oid in (dir_hash.value, *(hash_info.value for _, _, hash_info in tree))]


def pull_data(pointer: Path | str = DATA_POINTER) -> str:
    """Make the data directory match the pointer, from the cache or the DVC remote."""
    digest = dataset_hash(pointer)
    try:
        dvc("pull", "--quiet", str(pointer))
    except CommandError as e:
        remote = run(["dvc", "remote", "list"], check=False).strip()
        raise DataError(
            f"{pointer}: cannot resolve data version {digest}: it is neither in the local cache "
            f"nor in the DVC remote ({remote or 'no remote configured'}).\n"
            "Fix: on the machine that has the data run `dvc push`, or check out a data.dvc "
            "whose version was pushed (`git log -- data.dvc`).\n"
            f"dvc said: {e.message}"
        ) from None
    return digest


def import_tweeteval(source_dir: Path | str, out_dir: Path | str) -> dict[str, int]:
    """Convert TweetEval's line-per-text files into the tidy CSVs, cleaning what validate forbids.

    The validation split becomes the frozen holdout. Training rows whose (normalised) text appears
    in the holdout, texts carrying conflicting labels and duplicates are dropped.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    names = (source_dir / "mapping.txt").read_text(encoding="utf-8").split("\n")
    label_names = dict(line.split("\t") for line in names if line.strip())

    def load(split: str) -> pd.DataFrame:
        texts = (source_dir / f"{split}_text.txt").read_text(encoding="utf-8").split("\n")
        labels = (source_dir / f"{split}_labels.txt").read_text(encoding="utf-8").split()
        texts = [t.strip() for t in texts[: len(labels)]]
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
