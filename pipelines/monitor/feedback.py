"""feedback export: reviewed predictions become the next dataset version, on a new git branch.

Reads the corrections next to the prediction log, appends the new, non-duplicate reviewed texts
to the training split (never the frozen holdout), runs the validate stage, `dvc add data`,
pushes the data to the DVC remote and commits the changed data.dvc on `<prefix>/<date>-<n>`,
which is the change the retrain workflow triggers on. Any failure restores data/ and git.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.core.data import (
    COLUMNS,
    DataError,
    dataset_hash,
    normalise,
    read_split,
)
from pipelines.core.errors import PipelineError
from pipelines.core.gitops import git
from pipelines.core.params import Params
from pipelines.core.tools import dvc, succeeds
from pipelines.core.versions import in_repo_remote
from pipelines.stages import validate
from service.predlog import backend_of, sqlite_path
from service.review.store import ReviewStore, create_review_schema

DATA_DIR = Path("data")
POINTER = Path("data.dvc")


class FeedbackError(PipelineError):
    """The export cannot run (dirty data, no database, failed validation); nothing was changed."""


@dataclass
class ExportPlan:
    """Rows to append and why the other reviewed items were left out."""

    rows: pd.DataFrame
    skipped: Counter = field(default_factory=Counter)


@dataclass
class ExportResult:
    added: pd.DataFrame
    skipped: Counter
    old_hash: str
    new_hash: str | None
    branch: str | None


def _git(*args: str, check: bool = True) -> str:
    return git(".", *args, check=check, error=FeedbackError)


def _dvc(*args: str) -> str:
    return dvc(*args, error=FeedbackError)


def check_data_is_clean(train_file: Path) -> None:
    """Refuse to run unless data/ matches data.dvc and data.dvc matches the last commit."""
    if not POINTER.exists() or not train_file.exists():
        raise FeedbackError(f"{POINTER} or {train_file} missing: run `make data` first")
    if not succeeds(["git", "rev-parse", "--git-dir"]):
        raise FeedbackError("not inside a git repository: the export commits on a new branch")
    if not succeeds(["git", "diff", "--quiet", "HEAD", "--", str(POINTER)]):
        raise FeedbackError(f"{POINTER} has uncommitted changes: commit or "
                            f"`git checkout HEAD -- {POINTER}` first")
    status = json.loads(_dvc("status", "--json", str(POINTER)) or "{}")
    if status:
        raise FeedbackError(f"data/ differs from {POINTER} ({json.dumps(status)}): commit the "
                            f"change with `dvc add data` or discard it with `dvc checkout "
                            f"{POINTER}` first")


def plan_rows(reviewed: list[dict[str, Any]], train: pd.DataFrame, holdout: pd.DataFrame,
              labels: list[str], source: str) -> ExportPlan:
    """The reviewed items worth appending, deduplicated like validate (normalised text)."""
    skipped: Counter = Counter()
    in_train = dict(zip(train.text.map(normalise), train.label, strict=True))
    in_holdout = set(holdout.text.map(normalise))
    by_key: dict[str, list[dict[str, Any]]] = {}
    for item in reviewed:
        if item["text"] is None:
            skipped["text_only_hashed"] += 1
        elif item["label"] not in labels:
            skipped["label_not_in_data_labels"] += 1
        elif not normalise(item["text"]):
            skipped["empty_text"] += 1
        else:
            by_key.setdefault(normalise(item["text"]), []).append(item)
    rows = []
    for key, items in by_key.items():
        if len({i["label"] for i in items}) > 1:
            skipped["reviews_disagree"] += len(items)
        elif key in in_holdout:
            skipped["in_frozen_holdout"] += len(items)
        elif key in in_train:
            reason = "already_in_train" if in_train[key] == items[0]["label"] else \
                "train_has_other_label"
            skipped[reason] += len(items)
        else:
            skipped["duplicate_reviews"] += len(items) - 1
            first = items[0]
            digest = hashlib.sha256(first["text"].encode("utf-8")).hexdigest()
            rows.append({"id": f"feedback-{digest[:12]}", "text": first["text"],
                         "label": first["label"], "source": source})
    skipped = Counter({k: v for k, v in skipped.items() if v})
    return ExportPlan(pd.DataFrame(rows, columns=COLUMNS), skipped)


def append_rows(path: Path, rows: pd.DataFrame) -> None:
    """Append rows to a CSV split, leaving every existing byte as it was."""
    existing = path.read_bytes()
    lines = rows[COLUMNS].to_csv(index=False, header=False, lineterminator="\n")
    with path.open("ab") as handle:
        if existing and not existing.endswith(b"\n"):
            handle.write(b"\n")
        handle.write(lines.encode("utf-8"))


def next_branch(prefix: str, today: dt.date) -> str:
    """`<prefix>/<YYYY-MM-DD>-<n>` with the first n not already a local branch."""
    for n in range(1, 1000):
        name = f"{prefix}/{today.isoformat()}-{n}"
        if not succeeds(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{name}"]):
            return name
    raise FeedbackError(f"999 branches named {prefix}/{today.isoformat()}-N exist already")


def read_reviewed(db_url: str, labels: list[str]) -> list[dict[str, Any]]:
    """Every reviewed prediction in the log at db_url."""

    if backend_of(db_url) == "sqlite" and not sqlite_path(db_url).exists():
        raise FeedbackError(f"prediction log {sqlite_path(db_url)} does not exist: point "
                            "--db-url (or MODERATION_DB_URL) at the service's database")
    try:
        create_review_schema(db_url)
        return ReviewStore(db_url, labels).reviewed_items()
    except FeedbackError:
        raise
    except Exception as e:  # connection errors differ by driver; say which database
        raise FeedbackError(f"cannot read the prediction log at {db_url.split('@')[-1]}: "
                            f"{e}") from e


def export_feedback(params: Params, db_url: str, today: dt.date | None = None,
                    report: Path = Path("reports/validation.json")) -> ExportResult:
    """Append reviewed rows to the training split and commit the new data.dvc on a new branch."""
    train_file = Path(params.data.train_file)
    holdout_file = Path(params.data.holdout_file)
    check_data_is_clean(train_file)
    old_hash = dataset_hash(POINTER)
    plan = plan_rows(read_reviewed(db_url, params.data.labels), read_split(train_file),
                     read_split(holdout_file), params.data.labels, params.feedback.source)
    if plan.rows.empty:
        return ExportResult(plan.rows, plan.skipped, old_hash, None, None)

    original_train = train_file.read_bytes()
    start = _git("rev-parse", "--abbrev-ref", "HEAD").strip()
    if start == "HEAD":  # detached: come back to the commit itself
        start = "@" + _git("rev-parse", "HEAD").strip()
    remote = in_repo_remote()  # committed with the new data.dvc, so a clone can pull the rows
    paths = [str(POINTER)] + ([str(remote.relative_to(Path.cwd().resolve()))]
                              if remote is not None else [])
    branch = next_branch(params.feedback.branch_prefix, today or dt.date.today())
    switched = False
    try:
        append_rows(train_file, plan.rows)
        _dvc("add", "--quiet", str(DATA_DIR))  # first, so the report names the new version
        new_hash = dataset_hash(POINTER)
        try:
            validate.run(params, report)
        except DataError as e:
            raise FeedbackError(f"the new dataset fails validation, nothing was exported: "
                                f"{e}") from e
        _dvc("push", "--quiet", str(POINTER))
        _git("switch", "--quiet", "-c", branch)
        switched = True
        _git("add", "--", *paths)
        _git("commit", "--quiet", "-m", commit_message(plan, old_hash, new_hash), "--", *paths)
    except BaseException:
        _restore(train_file, original_train, start if switched else None, branch, paths)
        raise
    return ExportResult(plan.rows, plan.skipped, old_hash, new_hash, branch)


def _restore(train_file: Path, original: bytes, start_branch: str | None, branch: str,
             paths: list[str]) -> None:
    """Put data/, data.dvc, the index and the branch back as they were before the export."""
    train_file.write_bytes(original)
    _git("reset", "--quiet", "--", *paths, check=False)
    if start_branch is not None:
        _git("checkout", "--quiet", "HEAD", "--", str(POINTER), check=False)
        target = ["--detach", start_branch[1:]] if start_branch.startswith("@") else [start_branch]
        _git("switch", "--quiet", *target, check=False)
        _git("branch", "--quiet", "-D", branch, check=False)
    _git("checkout", "--quiet", "HEAD", "--", str(POINTER), check=False)


def commit_message(plan: ExportPlan, old_hash: str, new_hash: str) -> str:
    labels = Counter(plan.rows.label)
    lines = [f"feedback: add {len(plan.rows)} reviewed rows to the training data",
             "",
             f"data: {old_hash} -> {new_hash}",
             "added by label: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))]
    if plan.skipped:
        lines.append("skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(plan.skipped.items())))
    return "\n".join(lines)


def describe(result: ExportResult, train_file: str, shown: int = 20) -> str:
    """What the export did, for the terminal."""
    lines = []
    skipped = ", ".join(f"{k}={v}" for k, v in sorted(result.skipped.items())) or "none"
    if result.branch is None:
        lines.append(f"feedback: nothing new to add to {train_file} (skipped: {skipped}); "
                     f"data stays at {result.old_hash}")
        return "\n".join(lines)
    lines.append(f"feedback: added {len(result.added)} row(s) to {train_file}:")
    for row in result.added.head(shown).itertuples():
        text = row.text if len(row.text) <= 70 else row.text[:67] + "..."
        lines.append(f"  {row.label:<15} {text}")
    if len(result.added) > shown:
        lines.append(f"  ... and {len(result.added) - shown} more")
    lines += [f"skipped: {skipped}",
              f"data: {result.old_hash} -> {result.new_hash} (data.dvc)",
              f"committed on branch {result.branch} (checked out); push it and open a pull "
              f"request: git push -u origin {result.branch}"]
    return "\n".join(lines)
