"""Reviewed labels next to the prediction log: the review UI's tables, queries and counts.

The predictions table and the engine belong to service/predlog.py; this module declares the review
UI's three tables on the same SQLAlchemy metadata and reads and writes them with SQLAlchemy Core,
one query for both backends. The tables change only through the migrations in service/migrations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from service.predlog import LogTime, make_engine, metadata, predictions, prepare_database

REVIEW_STATUSES = ("all", "unreviewed", "reviewed", "confirmed", "fixed")
SORTS = ("uncertainty", "newest", "oldest")
MAX_PAGE = 500
MAX_BATCH = 500

MAX_DB_INT = 2**63 - 1  # both backends store ids and offsets as signed 64-bit integers
MAX_OFFSET = 10**9

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# The tables as the latest migration leaves them (service/migrations/versions).
# One row per reviewed prediction; the latest review wins.
corrections = sa.Table(
    "corrections", metadata,
    sa.Column("prediction_id", _ID, sa.ForeignKey("predictions.id"), primary_key=True,
              autoincrement=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),  # confirmed | fixed
    sa.Column("reviewer", sa.Text, nullable=False),
    sa.Column("reviewed_at", LogTime, nullable=False),
)
# One row per decided suspicious training row (the label-noise queue); the latest wins.
label_reviews = sa.Table(
    "label_reviews", metadata,
    sa.Column("row_id", sa.Text, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("given_label", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),  # kept | changed
    sa.Column("reviewer", sa.Text, nullable=False),
    sa.Column("reviewed_at", LogTime, nullable=False),
)
# Review sessions ended by logout, until they would have expired anyway (Unix seconds).
revoked_sessions = sa.Table(
    "revoked_sessions", metadata,
    sa.Column("session_id", sa.Text, primary_key=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)


class ReviewInputError(ValueError):
    """A filter, label or correction the review API cannot accept (answered with a 4xx)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def create_review_schema(url: str) -> None:
    """Make the log usable by the review UI and the export: a SQLite log is migrated, a
    PostgreSQL one must already be (predlog.prepare_database)."""
    prepare_database(url)


@dataclass(frozen=True)
class Filters:
    """What the reviewer narrowed the list to; every field is optional."""

    label: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    model_version: str | None = None
    disagree: bool = False
    status: str = "all"


def parse_time(value: str, field: str) -> datetime:
    """An ISO 8601 time (from an API query or a datetime-local input); naive means UTC."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ReviewInputError(f"{field}={value!r} is not an ISO 8601 time "
                               "(e.g. 2026-01-31T12:00 or 2026-01-31T12:00:00Z)") from None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise ReviewInputError(f"{field}={value!r} is outside the years 1-9999 in UTC") from None


def printable(value: str | None, field: str) -> str | None:
    """A free-text filter value; NUL and other control characters cannot be stored or matched."""
    if not value:
        return None
    if any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ReviewInputError(f"{field}={value!r} contains control characters")
    return value


def prediction_id(value: object, where: str) -> int:
    """A prediction id from an API body: an integer in the database's range."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_DB_INT:
        raise ReviewInputError(f"{where}: expected a prediction id (integer 1..{MAX_DB_INT}), "
                               f"got {value!r}"[:300])
    return value


def parse_filters(query: dict[str, str], labels: Sequence[str]) -> Filters:
    """Filters from query parameters; a bad value is a ReviewInputError naming the parameter."""

    def score(name: str) -> float | None:
        raw = query.get(name, "").strip()
        if not raw:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise ReviewInputError(f"{name}={raw!r} is not a number between 0 and 1") from None
        if not 0.0 <= value <= 1.0:
            raise ReviewInputError(f"{name}={raw!r} is outside [0, 1]")
        return value

    label = query.get("label") or None
    if label is not None and label not in labels:
        raise ReviewInputError(f"label={label!r} is not one of {list(labels)}")
    status = query.get("status") or "all"
    if status not in REVIEW_STATUSES:
        raise ReviewInputError(f"status={status!r} is not one of {list(REVIEW_STATUSES)}")
    return Filters(
        label=label, min_score=score("min_score"), max_score=score("max_score"),
        since=parse_time(query["since"], "since") if query.get("since") else None,
        until=parse_time(query["until"], "until") if query.get("until") else None,
        model_version=printable(query.get("model_version"), "model_version"),
        disagree=query.get("disagree", "").lower() in ("1", "true", "yes", "on"),
        status=status)


class ReviewStore:
    """Reads the prediction log and writes corrections, on SQLite or PostgreSQL."""

    def __init__(self, url: str, labels: Sequence[str]):
        self.url = url
        self.labels = list(labels)
        self.positive = self.labels[-1]
        self.engine = make_engine(url)
        # The positive-class probability from the scores JSON (json_extract / ->>).
        self._score = sa.type_coerce(predictions.c.scores, sa.JSON)[self.positive].as_float()

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def _where(self, f: Filters) -> list[sa.ColumnElement[bool]]:
        p, c = predictions.c, corrections.c
        clauses: list[sa.ColumnElement[bool]] = []
        if f.label:
            clauses.append(p.label == f.label)
        if f.min_score is not None:
            clauses.append(self._score >= f.min_score)
        if f.max_score is not None:
            clauses.append(self._score <= f.max_score)
        if f.since:
            clauses.append(p.created_at >= f.since)
        if f.until:
            clauses.append(p.created_at <= f.until)
        if f.model_version:
            clauses.append(p.model_version == f.model_version)
        if f.disagree:
            clauses.append(sa.and_(p.shadow_label.is_not(None), p.shadow_label != p.label))
        if f.status == "unreviewed":
            clauses.append(c.prediction_id.is_(None))
        elif f.status == "reviewed":
            clauses.append(c.prediction_id.is_not(None))
        elif f.status in ("confirmed", "fixed"):
            clauses.append(c.action == f.status)
        return clauses

    def _fetch(self, statement: sa.Executable) -> list[sa.Row]:
        with self.engine.connect() as conn:
            return list(conn.execute(statement))

    def list_items(self, f: Filters, sort: str = "uncertainty", limit: int = 50,
                   offset: int = 0) -> list[dict[str, Any]]:
        """One page of predictions with their review, most useful first."""
        if sort not in SORTS:
            raise ReviewInputError(f"sort={sort!r} is not one of {list(SORTS)}")
        if not 0 < limit <= MAX_PAGE or not 0 <= offset <= MAX_OFFSET:
            raise ReviewInputError(f"limit must be 1..{MAX_PAGE} and offset 0..{MAX_OFFSET}, "
                                   f"got limit={limit}, offset={offset}")
        p, c = predictions.c, corrections.c
        order = {
            "uncertainty": (sa.func.abs(self._score - 0.5).asc(), p.id.desc()),
            "newest": (p.created_at.desc(), p.id.desc()),
            "oldest": (p.created_at.asc(), p.id.asc()),
        }[sort]
        query = (sa.select(p.id, p.created_at, p.model_version, p.text, p.text_sha256, p.label,
                           p.scores, p.shadow_label, p.shadow_model_version, c.label, c.action,
                           c.reviewer, c.reviewed_at)
                 .select_from(_reviewed(outer=True)).where(*self._where(f))
                 .order_by(*order).limit(limit).offset(offset))
        return [self._item(row) for row in self._fetch(query)]

    def _item(self, row: sa.Row) -> dict[str, Any]:
        (pid, created, version, text, digest, label, scores, shadow, shadow_version,
         c_label, c_action, c_reviewer, c_time) = row
        return {
            "id": int(pid), "created_at": _iso(created), "model_version": version,
            "text": text, "text_sha256": digest, "label": label, "scores": scores,
            "score": float(scores.get(self.positive, 0.0)), "shadow_label": shadow,
            "shadow_model_version": shadow_version,
            "review": None if c_label is None else {
                "label": c_label, "action": c_action, "reviewer": c_reviewer,
                "reviewed_at": _iso(c_time)},
        }

    def counts(self, f: Filters | None = None) -> dict[str, int]:
        """How many predictions match, and how many of those are reviewed / confirmed / fixed."""
        f = f or Filters()
        c = corrections.c
        fixed = sa.func.coalesce(sa.func.sum(sa.case((c.action == "fixed", 1), else_=0)), 0)
        query = (sa.select(sa.func.count(), sa.func.count(c.prediction_id), fixed)
                 .select_from(_reviewed(outer=True))
                 .where(*self._where(replace(f, status="all"))))
        total, reviewed, fixed = self._fetch(query)[0]
        return {"total": int(total), "reviewed": int(reviewed),
                "unreviewed": int(total) - int(reviewed), "fixed": int(fixed),
                "confirmed": int(reviewed) - int(fixed)}

    def model_versions(self) -> list[str]:
        version = predictions.c.model_version
        return [r[0] for r in self._fetch(sa.select(version).distinct().order_by(version))]

    # -- writes --------------------------------------------------------------------------

    def check_corrections(self, items: Any) -> list[tuple[int, str]]:
        """(prediction id, label) pairs from an API body; errors name the item and field."""
        if not isinstance(items, list) or not items:
            raise ReviewInputError('expected {"items": [{"id": <prediction id>, "label": '
                                   f'<one of {self.labels}>}}, ...]}} with at least one item')
        if len(items) > MAX_BATCH:
            raise ReviewInputError(f"items: {len(items)} corrections in one request, "
                                   f"at most {MAX_BATCH}", status=413)
        pairs: list[tuple[int, str]] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ReviewInputError(f"items[{i}]: expected an object with id and label")
            pid = prediction_id(item.get("id"), f"items[{i}].id")
            label = item.get("label")
            if label not in self.labels:
                raise ReviewInputError(f"items[{i}].label: label {label!r} is not one of the "
                                       f"allowed labels {self.labels} (params.yaml data.labels)")
            pairs.append((pid, label))
        return once_per_id(pairs, "prediction")

    def save_corrections(self, pairs: Sequence[tuple[int, str]], reviewer: str) -> int:
        """Record reviews (the latest per prediction wins), all or nothing; returns how many."""
        ids = sorted({pid for pid, _ in pairs})
        with self.engine.begin() as conn:
            found = dict(conn.execute(sa.select(predictions.c.id, predictions.c.label)
                                      .where(predictions.c.id.in_(ids))).all())
            missing = [pid for pid in ids if pid not in found]
            if missing:
                raise ReviewInputError(f"no logged prediction with id(s) {missing[:20]}",
                                       status=404)
            now = datetime.now(UTC)
            rows = [{"prediction_id": pid, "label": label, "reviewer": reviewer,
                     "action": "confirmed" if found[pid] == label else "fixed",
                     "reviewed_at": now} for pid, label in pairs]
            conn.execute(_upsert(conn, corrections), rows)
            return len(rows)

    def undo(self, prediction_ids: Sequence[int]) -> int:
        """Forget the reviews of these predictions (back to unreviewed); returns how many."""
        if not prediction_ids:
            return 0
        with self.engine.begin() as conn:
            return int(conn.execute(corrections.delete().where(
                corrections.c.prediction_id.in_(list(prediction_ids)))).rowcount)

    def check_label_decisions(self, items: Any, suspicious: Sequence[dict[str, Any]]
                              ) -> list[tuple[dict[str, Any], str]]:
        """(suspicious row, decided label) pairs from an API body {"items": [{"id": <row id>,
        "label": ...}]}; the row must be in the validation report's suspicious list."""
        if not isinstance(items, list) or not items:
            raise ReviewInputError('expected {"items": [{"id": <training row id>, "label": '
                                   f'<one of {self.labels}>}}, ...]}} with at least one item')
        if len(items) > MAX_BATCH:
            raise ReviewInputError(f"items: {len(items)} decisions in one request, "
                                   f"at most {MAX_BATCH}", status=413)
        by_id = {str(row["id"]): row for row in suspicious if row.get("id") is not None}
        pairs = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ReviewInputError(f"items[{i}]: expected an object with id and label")
            row_id, label = item.get("id"), item.get("label")
            if not isinstance(row_id, str) or row_id not in by_id:
                raise ReviewInputError(f"items[{i}].id: {row_id!r} is not a suspicious training "
                                       "row of the current validation report"[:300], status=404)
            if label not in self.labels:
                raise ReviewInputError(f"items[{i}].label: label {label!r} is not one of the "
                                       f"allowed labels {self.labels} (params.yaml data.labels)")
            pairs.append((row_id, label))
        return [(by_id[row_id], label) for row_id, label in once_per_id(pairs, "training row")]

    def save_label_decisions(self, pairs: Sequence[tuple[dict[str, Any], str]],
                             reviewer: str) -> int:
        """Record keep/change decisions on suspicious training rows (the latest wins)."""
        now = datetime.now(UTC)
        rows = [{"row_id": str(row["id"]), "text": row["text"], "given_label": row["label"],
                 "label": label, "action": "kept" if label == row["label"] else "changed",
                 "reviewer": reviewer, "reviewed_at": now} for row, label in pairs]
        with self.engine.begin() as conn:
            conn.execute(_upsert(conn, label_reviews), rows)
        return len(rows)

    def label_decisions(self) -> list[dict[str, Any]]:
        """Every decision on a suspicious training row, oldest first."""
        r = label_reviews.c
        rows = self._fetch(sa.select(r.row_id, r.text, r.given_label, r.label, r.action,
                                     r.reviewer, r.reviewed_at)
                           .order_by(r.reviewed_at, r.row_id))
        return [{"id": r[0], "text": r[1], "given": r[2], "label": r[3], "action": r[4],
                 "reviewer": r[5], "reviewed_at": _iso(r[6])} for r in rows]

    def revoke_session(self, session_id: str, expires_at: int) -> None:
        """End a session before it expires (logout); idempotent."""
        s = revoked_sessions.c
        with self.engine.begin() as conn:
            conn.execute(revoked_sessions.delete().where(
                s.expires_at < int(datetime.now(UTC).timestamp())))
            conn.execute(_dialect_insert(conn, revoked_sessions)
                         .values(session_id=session_id, expires_at=expires_at)
                         .on_conflict_do_nothing(index_elements=[s.session_id]))

    def is_revoked(self, session_id: str) -> bool:
        return bool(self._fetch(sa.select(sa.literal(1))
                                .where(revoked_sessions.c.session_id == session_id)))

    def reviewed_items(self) -> list[dict[str, Any]]:
        """Every reviewed prediction with its text (None when only the hash was logged)."""
        p, c = predictions.c, corrections.c
        rows = self._fetch(sa.select(p.id, p.text, p.text_sha256, p.label, c.label, c.action,
                                     c.reviewer, c.reviewed_at)
                           .select_from(_reviewed(outer=False))
                           .order_by(c.reviewed_at, p.id))
        return [{"id": int(r[0]), "text": r[1], "text_sha256": r[2], "predicted": r[3],
                 "label": r[4], "action": r[5], "reviewer": r[6], "reviewed_at": _iso(r[7])}
                for r in rows]


def _reviewed(outer: bool) -> sa.Join:
    """Predictions joined with their review (all of them when `outer`)."""
    return predictions.join(corrections, corrections.c.prediction_id == predictions.c.id,
                            isouter=outer)


def _dialect_insert(conn: sa.Connection, table: sa.Table) -> Any:
    """INSERT with the backend's ON CONFLICT clause (both spell it alike, SQLAlchemy has one
    construct per dialect)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _upsert(conn: sa.Connection, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE every other column: the latest wins."""
    insert = _dialect_insert(conn, table)
    return insert.on_conflict_do_update(
        index_elements=list(table.primary_key),
        set_={col.name: insert.excluded[col.name] for col in table.columns
              if not col.primary_key})


def once_per_id(pairs: list[tuple[Any, str]], what: str) -> list[tuple[Any, str]]:
    """(id, label) pairs with repeats of the same decision counted once; two different labels
    for one id in one request are refused, naming the id and both items."""
    first: dict[Any, tuple[int, str]] = {}
    unique = []
    for i, (key, label) in enumerate(pairs):
        if key not in first:
            first[key] = (i, label)
            unique.append((key, label))
        elif first[key][1] != label:
            j, other = first[key]
            raise ReviewInputError(f"{what} id {key!r} has two labels in this request: "
                                   f"items[{j}] says {other!r}, items[{i}] says {label!r}; "
                                   "send one decision per id"[:300])
    return unique


def _iso(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
