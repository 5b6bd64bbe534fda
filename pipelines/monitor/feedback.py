"""feedback export: reviewed predictions become the next dataset version, on a new git branch.

Reads the corrections next to the prediction log, appends the new, non-duplicate reviewed texts
to the training split (never the frozen holdout), applies the reviewers' label decisions on the
suspicious training rows of the validation report (matched by row id and text), runs the
validate stage, `dvc add data`, pushes the data to the DVC remote and commits the changed
data.dvc on `<prefix>/<date>-<n>`, which is the change the retrain workflow triggers on, with a
signed review record per written row in the provenance file (pipelines/core/provenance.py: what
makes validate trust the rows' labels). Any failure restores data/, the provenance file and git.
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

from pipelines.analysis.label_noise import SHOWN_CHARS
from pipelines.core.data import (
    COLUMNS,
    DataError,
    control_characters,
    dataset_hash,
    normalise,
    read_split,
    write_split,
)
from pipelines.core.gitops import git
from pipelines.core.provenance import (
    KEY_ENV,
    ReviewRecord,
    append_records,
    signing_key,
    text_sha256,
)
from pipelines.core.tools import dvc, succeeds
from pipelines.core.versions import in_repo_remote
from pipelines.runtime.errors import PipelineError
from pipelines.runtime.params import Params
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
    records: list[ReviewRecord] = field(default_factory=list)  # one per row, for provenance


@dataclass
class RelabelPlan:
    """The training split with the reviewers' label changes, and which rows they changed."""

    train: pd.DataFrame
    changed: pd.DataFrame  # id, line, text, old, label
    skipped: Counter = field(default_factory=Counter)
    records: list[ReviewRecord] = field(default_factory=list)  # one per changed row


@dataclass
class ExportResult:
    added: pd.DataFrame
    skipped: Counter
    old_hash: str
    new_hash: str | None
    branch: str | None
    relabelled: pd.DataFrame = field(default_factory=pd.DataFrame)


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
        elif control_characters(item["text"]):  # validate rejects them; never write them
            skipped["control_characters"] += 1
        else:
            by_key.setdefault(normalise(item["text"]), []).append(item)
    rows, records = [], []
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
            records.append(ReviewRecord(rows[-1]["id"], text_sha256(first["text"]),
                                        first["label"], str(first["reviewer"]),
                                        str(first["reviewed_at"])))
    skipped = Counter({k: v for k, v in skipped.items() if v})
    return ExportPlan(pd.DataFrame(rows, columns=COLUMNS), skipped, records)


def shown_text_matches(text: str, shown: str) -> bool:
    """Whether a training row's text is the one the validation report showed (cut at
    SHOWN_CHARS there)."""
    return text == shown or (len(shown) == SHOWN_CHARS and text.startswith(shown))


def plan_relabels(decisions: list[dict[str, Any]], train: pd.DataFrame, labels: list[str],
                  source: str) -> RelabelPlan:
    """Apply "change" decisions to the rows with the same id and text that still carry the
    label the reviewer saw; anything else is left alone and counted. A changed row's source
    becomes `source`, like appended reviewed rows: the label_noise rule trusts reviewed labels
    (its scorers disagreeing with them is why they were reviewed, not a sign of a wrong label)."""
    skipped: Counter = Counter()
    train = train.copy()
    changed, records = [], []
    for d in decisions:
        if d["label"] == d["given"]:
            skipped["labels_kept"] += 1
            continue
        if d["label"] not in labels:
            skipped["label_not_in_data_labels"] += 1
            continue
        same_id = train.index[train["id"] == d["id"]]
        rows = [i for i in same_id if shown_text_matches(train.at[i, "text"], d["text"])]
        if not rows:
            skipped["relabel_row_gone" if len(same_id) == 0 else "relabel_text_changed"] += 1
        elif any(train.at[i, "label"] == d["label"] for i in rows):
            skipped["relabel_already_applied"] += 1
        elif any(train.at[i, "label"] != d["given"] for i in rows):
            skipped["relabel_label_changed_since_review"] += 1
        else:
            for i in rows:
                changed.append({"id": d["id"], "line": int(i) + 2, "text": train.at[i, "text"],
                                "old": train.at[i, "label"], "label": d["label"]})
                train.at[i, "label"] = d["label"]
                train.at[i, "source"] = source
                records.append(ReviewRecord(str(d["id"]), text_sha256(train.at[i, "text"]),
                                            d["label"], str(d["reviewer"]),
                                            str(d["reviewed_at"])))
    return RelabelPlan(train, pd.DataFrame(changed, columns=["id", "line", "text", "old", "label"]),
                       Counter({k: v for k, v in skipped.items() if v}), records)


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


def read_reviewed(db_url: str, labels: list[str]
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every reviewed prediction in the log at db_url, and every decision on a suspicious
    training label."""

    if backend_of(db_url) == "sqlite" and not sqlite_path(db_url).exists():
        raise FeedbackError(f"prediction log {sqlite_path(db_url)} does not exist: point "
                            "--db-url (or MODERATION_DB_URL) at the service's database")
    try:
        create_review_schema(db_url)
        store = ReviewStore(db_url, labels)
        return store.reviewed_items(), store.label_decisions()
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
    reviewed, decisions = read_reviewed(db_url, params.data.labels)
    relabel = plan_relabels(decisions, read_split(train_file), params.data.labels,
                            params.feedback.source)
    plan = plan_rows(reviewed, relabel.train, read_split(holdout_file), params.data.labels,
                     params.feedback.source)
    plan.skipped += relabel.skipped
    if plan.rows.empty and relabel.changed.empty:
        return ExportResult(plan.rows, plan.skipped, old_hash, None, None, relabel.changed)
    key = signing_key()
    if key is None:
        raise FeedbackError(f"{KEY_ENV} is not set: the export signs a review record for each "
                            "row it writes, and validate (here and in CI) trusts a reviewed "
                            "label only with a valid signature. Set it to the secret CI's "
                            "validate uses (`openssl rand -hex 32` makes a new one)")

    original_train = train_file.read_bytes()
    provenance = Path(params.feedback.provenance_file)
    original_provenance = provenance.read_bytes() if provenance.exists() else None
    start = _git("rev-parse", "--abbrev-ref", "HEAD").strip()
    if start == "HEAD":  # detached: come back to the commit itself
        start = "@" + _git("rev-parse", "HEAD").strip()
    remote = in_repo_remote()  # committed with the new data.dvc, so a clone can pull the rows
    paths = [str(POINTER), str(provenance)] + ([str(remote.relative_to(Path.cwd().resolve()))]
                                               if remote is not None else [])
    branch = next_branch(params.feedback.branch_prefix, today or dt.date.today())
    switched = False
    try:
        if not relabel.changed.empty:
            write_split(relabel.train, train_file)
        append_rows(train_file, plan.rows)
        append_records(provenance, relabel.records + plan.records, key)
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
        _git("commit", "--quiet", "-m",
             commit_message(plan, relabel.changed, old_hash, new_hash), "--", *paths)
    except BaseException:
        _restore(train_file, original_train, start if switched else None, branch, paths)
        if original_provenance is None:
            provenance.unlink(missing_ok=True)
        else:
            provenance.write_bytes(original_provenance)
        raise
    return ExportResult(plan.rows, plan.skipped, old_hash, new_hash, branch, relabel.changed)


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


def commit_message(plan: ExportPlan, relabelled: pd.DataFrame, old_hash: str,
                   new_hash: str) -> str:
    labels = Counter(plan.rows.label)
    changes = Counter(f"{r.old}->{r.label}" for r in relabelled.itertuples())
    lines = [f"feedback: add {len(plan.rows)} reviewed rows to the training data, "
             f"change {len(relabelled)} label(s)",
             "",
             f"data: {old_hash} -> {new_hash}",
             "added by label: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())),
             "labels changed: " + ", ".join(f"{k}={v}" for k, v in sorted(changes.items()))]
    if plan.skipped:
        lines.append("skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(plan.skipped.items())))
    return "\n".join(lines)


def describe(result: ExportResult, train_file: str, shown: int = 20) -> str:
    """What the export did, for the terminal."""
    lines = []
    skipped = ", ".join(f"{k}={v}" for k, v in sorted(result.skipped.items())) or "none"
    if result.branch is None:
        lines.append(f"feedback: nothing new to add to {train_file} and no label to change "
                     f"(skipped: {skipped}); "
                     f"data stays at {result.old_hash}")
        return "\n".join(lines)
    lines.append(f"feedback: added {len(result.added)} row(s) to {train_file}:")
    for row in result.added.head(shown).itertuples():
        lines.append(f"  {row.label:<15} {_cut(row.text)}")
    if len(result.added) > shown:
        lines.append(f"  ... and {len(result.added) - shown} more")
    lines.append(f"feedback: changed {len(result.relabelled)} label(s) in {train_file}:")
    for row in result.relabelled.head(shown).itertuples():
        lines.append(f"  {train_file}:{row.line} {row.old} -> {row.label}  {_cut(row.text)}")
    if len(result.relabelled) > shown:
        lines.append(f"  ... and {len(result.relabelled) - shown} more")
    lines += [f"skipped: {skipped}",
              f"data: {result.old_hash} -> {result.new_hash} (data.dvc)",
              f"committed on branch {result.branch} (checked out); push it and open a pull "
              f"request: git push -u origin {result.branch}"]
    return "\n".join(lines)


def _cut(text: str) -> str:
    return text if len(text) <= 70 else text[:67] + "..."
