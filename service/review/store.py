"""Reviewed labels next to the prediction log: the corrections table, queries and counts.

The predictions table and the connection code belong to service/predlog.py; this module only adds
one table (one row per reviewed prediction, the latest review wins) and reads both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from service.predlog import backend_of, connect, placeholder, prepare_database

REVIEW_STATUSES = ("all", "unreviewed", "reviewed", "confirmed", "fixed")
SORTS = ("uncertainty", "newest", "oldest")
MAX_PAGE = 500
MAX_BATCH = 500

# The tables (corrections, label_reviews, revoked_sessions) are created by the migrations in
# service/migrations, like the predictions table.
MAX_DB_INT = 2**63 - 1  # both backends store ids and offsets as signed 64-bit integers
MAX_OFFSET = 10**9


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
        self.backend = backend_of(url)
        self.mark = placeholder(url)

    # -- SQL pieces that differ between the backends --------------------------------------

    def _score_sql(self) -> str:
        """The positive-class score of a prediction as a float expression."""
        if self.backend == "sqlite":
            return "CAST(json_extract(p.scores, ?) AS REAL)"
        return "CAST(p.scores ->> CAST(%s AS TEXT) AS DOUBLE PRECISION)"

    def _score_arg(self) -> str:
        return f'$."{self.positive}"' if self.backend == "sqlite" else self.positive

    def _time_arg(self, moment: datetime) -> Any:
        # SQLite stores predlog's ISO text (UTC, 'Z'); lexical order is time order.
        if self.backend == "sqlite":
            return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return moment

    # -- queries -------------------------------------------------------------------------

    def _where(self, f: Filters) -> tuple[str, list[Any]]:
        clauses, args = [], []
        m = self.mark
        if f.label:
            clauses.append(f"p.label = {m}")
            args.append(f.label)
        if f.min_score is not None:
            clauses.append(f"{self._score_sql()} >= {m}")
            args += [self._score_arg(), f.min_score]
        if f.max_score is not None:
            clauses.append(f"{self._score_sql()} <= {m}")
            args += [self._score_arg(), f.max_score]
        if f.since:
            clauses.append(f"p.created_at >= {m}")
            args.append(self._time_arg(f.since))
        if f.until:
            clauses.append(f"p.created_at <= {m}")
            args.append(self._time_arg(f.until))
        if f.model_version:
            clauses.append(f"p.model_version = {m}")
            args.append(f.model_version)
        if f.disagree:
            clauses.append("p.shadow_label IS NOT NULL AND p.shadow_label <> p.label")
        if f.status == "unreviewed":
            clauses.append("c.prediction_id IS NULL")
        elif f.status == "reviewed":
            clauses.append("c.prediction_id IS NOT NULL")
        elif f.status in ("confirmed", "fixed"):
            clauses.append(f"c.action = {m}")
            args.append(f.status)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def _fetch(self, sql: str, args: Sequence[Any]) -> list[tuple]:
        conn = connect(self.url)
        try:
            return list(conn.execute(sql, list(args)).fetchall())
        finally:
            conn.close()

    def list_items(self, f: Filters, sort: str = "uncertainty", limit: int = 50,
                   offset: int = 0) -> list[dict[str, Any]]:
        """One page of predictions with their review, most useful first."""
        if sort not in SORTS:
            raise ReviewInputError(f"sort={sort!r} is not one of {list(SORTS)}")
        if not 0 < limit <= MAX_PAGE or not 0 <= offset <= MAX_OFFSET:
            raise ReviewInputError(f"limit must be 1..{MAX_PAGE} and offset 0..{MAX_OFFSET}, "
                                   f"got limit={limit}, offset={offset}")
        where, args = self._where(f)
        order = {
            "uncertainty": f"ABS({self._score_sql()} - 0.5) ASC, p.id DESC",
            "newest": "p.created_at DESC, p.id DESC",
            "oldest": "p.created_at ASC, p.id ASC",
        }[sort]
        order_args = [self._score_arg()] if sort == "uncertainty" else []
        sql = ("SELECT p.id, p.created_at, p.model_version, p.text, p.text_sha256, p.label, "
               "p.scores, p.shadow_label, p.shadow_model_version, c.label, c.action, "
               "c.reviewer, c.reviewed_at "
               "FROM predictions p LEFT JOIN corrections c ON c.prediction_id = p.id"
               f"{where} ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}")
        return [self._item(row) for row in self._fetch(sql, [*args, *order_args])]

    def _item(self, row: tuple) -> dict[str, Any]:
        (pid, created, version, text, digest, label, scores, shadow, shadow_version,
         c_label, c_action, c_reviewer, c_time) = row
        scores = scores if isinstance(scores, dict) else json.loads(scores)
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
        where, args = self._where(replace(f, status="all"))
        sql = ("SELECT COUNT(*), COUNT(c.prediction_id), "
               "COALESCE(SUM(CASE WHEN c.action = 'fixed' THEN 1 ELSE 0 END), 0) "
               f"FROM predictions p LEFT JOIN corrections c ON c.prediction_id = p.id{where}")
        total, reviewed, fixed = self._fetch(sql, args)[0]
        return {"total": int(total), "reviewed": int(reviewed),
                "unreviewed": int(total) - int(reviewed), "fixed": int(fixed),
                "confirmed": int(reviewed) - int(fixed)}

    def model_versions(self) -> list[str]:
        return [r[0] for r in self._fetch(
            "SELECT DISTINCT model_version FROM predictions ORDER BY model_version", [])]

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
        conn = connect(self.url)
        try:
            marks = ", ".join([self.mark] * len(ids))
            found = dict(conn.execute(f"SELECT id, label FROM predictions WHERE id IN ({marks})",
                                      ids).fetchall())
            missing = [pid for pid in ids if pid not in found]
            if missing:
                raise ReviewInputError(f"no logged prediction with id(s) {missing[:20]}",
                                       status=404)
            now = datetime.now(UTC)
            stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if self.backend == "sqlite" else now
            m = self.mark
            upsert = (f"INSERT INTO corrections (prediction_id, label, action, reviewer, "
                      f"reviewed_at) VALUES ({m}, {m}, {m}, {m}, {m}) "
                      "ON CONFLICT (prediction_id) DO UPDATE SET label = excluded.label, "
                      "action = excluded.action, reviewer = excluded.reviewer, "
                      "reviewed_at = excluded.reviewed_at")
            rows = [(pid, label, "confirmed" if found[pid] == label else "fixed", reviewer, stamp)
                    for pid, label in pairs]
            conn.cursor().executemany(upsert, rows)
            conn.commit()
            return len(rows)
        finally:
            conn.close()

    def undo(self, prediction_ids: Sequence[int]) -> int:
        """Forget the reviews of these predictions (back to unreviewed); returns how many."""
        if not prediction_ids:
            return 0
        conn = connect(self.url)
        try:
            cur = conn.execute("DELETE FROM corrections WHERE prediction_id IN "
                               f"({', '.join([self.mark] * len(prediction_ids))})",
                               list(prediction_ids))
            conn.commit()
            return int(cur.rowcount)
        finally:
            conn.close()

    def _now(self) -> Any:
        now = datetime.now(UTC)
        return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if self.backend == "sqlite" else now

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
        m, stamp = self.mark, self._now()
        upsert = (f"INSERT INTO label_reviews (row_id, text, given_label, label, action, "
                  f"reviewer, reviewed_at) VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}) "
                  "ON CONFLICT (row_id) DO UPDATE SET text = excluded.text, "
                  "given_label = excluded.given_label, label = excluded.label, "
                  "action = excluded.action, reviewer = excluded.reviewer, "
                  "reviewed_at = excluded.reviewed_at")
        rows = [(str(row["id"]), row["text"], row["label"], label,
                 "kept" if label == row["label"] else "changed", reviewer, stamp)
                for row, label in pairs]
        conn = connect(self.url)
        try:
            conn.cursor().executemany(upsert, rows)
            conn.commit()
            return len(rows)
        finally:
            conn.close()

    def label_decisions(self) -> list[dict[str, Any]]:
        """Every decision on a suspicious training row, oldest first."""
        rows = self._fetch("SELECT row_id, text, given_label, label, action, reviewer, "
                           "reviewed_at FROM label_reviews ORDER BY reviewed_at, row_id", [])
        return [{"id": r[0], "text": r[1], "given": r[2], "label": r[3], "action": r[4],
                 "reviewer": r[5], "reviewed_at": _iso(r[6])} for r in rows]

    def revoke_session(self, session_id: str, expires_at: int) -> None:
        """End a session before it expires (logout); idempotent."""
        conn = connect(self.url)
        try:
            conn.execute("DELETE FROM revoked_sessions WHERE expires_at < "
                         f"{self.mark}", [int(datetime.now(UTC).timestamp())])
            conn.execute(f"INSERT INTO revoked_sessions (session_id, expires_at) VALUES "
                         f"({self.mark}, {self.mark}) ON CONFLICT (session_id) DO NOTHING",
                         [session_id, expires_at])
            conn.commit()
        finally:
            conn.close()

    def is_revoked(self, session_id: str) -> bool:
        return bool(self._fetch(f"SELECT 1 FROM revoked_sessions WHERE session_id = {self.mark}",
                                [session_id]))

    def reviewed_items(self) -> list[dict[str, Any]]:
        """Every reviewed prediction with its text (None when only the hash was logged)."""
        rows = self._fetch(
            "SELECT p.id, p.text, p.text_sha256, p.label, c.label, c.action, c.reviewer, "
            "c.reviewed_at FROM predictions p JOIN corrections c ON c.prediction_id = p.id "
            "ORDER BY c.reviewed_at, p.id", [])
        return [{"id": int(r[0]), "text": r[1], "text_sha256": r[2], "predicted": r[3],
                 "label": r[4], "action": r[5], "reviewer": r[6], "reviewed_at": _iso(r[7])}
                for r in rows]


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
